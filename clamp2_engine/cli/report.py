"""What ``eval``, ``score`` and ``classify`` share: their path types, tables on stdout and the per-file
problems they skip."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clamp2_engine.cli.options import table_console
from clamp2_engine.runlog import ErrorLog, console

DIR = click.Path(exists=True, file_okay=False, path_type=Path)
OUT_FILE = click.Path(dir_okay=False, writable=True, path_type=Path)


def stdout_console() -> Console:
    """The console tables go to (stdout)."""
    return table_console()


def show_errors(errors: Sequence[tuple[str, str]], log: ErrorLog | None = None, stage: str = "load") -> None:
    """Print the first few per-file problems on stderr (and log all of them when ``log`` is given)."""
    for source, reason in errors:
        if log is not None:
            log.add(source, stage, reason)
    for source, reason in errors[:10]:
        console.print(f"[yellow]skipped[/yellow] {escape(source)}: {escape(reason)}", highlight=False)
    if len(errors) > 10:
        console.print(f"[yellow]... and {len(errors) - 10} more[/yellow]")
    if log is not None and errors:
        console.print(f"[yellow]{len(errors)} skipped file(s); reasons in {escape(str(log.path))}[/yellow]")


def error_dicts(errors: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"source": s, "reason": r} for s, r in errors]


def metrics_table(title: str, metrics: dict[str, Any], decimals: int) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.{decimals}f}" if isinstance(value, float) else str(value))
    return table
