"""Shared bookkeeping for batch commands: per-item error log, run summary, progress bars.

Every batch command (embed, convert, ingest, summarize) reports a failed item as one JSON line
``{"source", "stage", "reason"}`` in an ``errors.jsonl`` and goes on; the final summary counts
done / skipped / failed items.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from clamp2_engine.errors import first_line
from clamp2_engine.paths import shown_name

console = Console(stderr=True)


class ErrorLog:
    """Append-only JSONL error log; thread-safe; the file is created on the first error only."""

    def __init__(self, path: str | os.PathLike, reset: bool = False):
        """``reset=True`` clears a previous run's log, so the file describes the latest run only; the
        previous run's records stay in ``previous`` (see :meth:`keep_previous`)."""
        self.path = Path(path)
        self.previous: list[dict[str, Any]] = []
        if reset and self.path.exists():
            self.previous = read_records(self.path)
            self.path.unlink()
        self._lock = threading.Lock()
        self.count = 0
        self.notes = 0  # records of stage "note": a fallback taken, not a failure
        self.reasons: Counter[str] = Counter()
        self.sources: set[str] = set()

    def keep_previous(self, keep: Callable[[dict[str, Any]], bool]) -> int:
        """Log again the previous run's records that ``keep`` accepts (e.g. those of items a re-run
        skipped as unchanged, whose problems still stand); returns how many."""
        kept = [r for r in self.previous if keep(r)]
        for r in kept:
            extra = {k: v for k, v in r.items() if k not in ("source", "stage", "reason")}
            self.add(str(r.get("source", "")), str(r.get("stage", "")), str(r.get("reason", "")), **extra)
        self.previous = []
        return len(kept)

    def add(self, source: str | os.PathLike, stage: str, reason: str | BaseException, **extra: Any) -> None:
        text = reason if isinstance(reason, str) else describe_error(reason)
        record = {"source": shown_name(source), "stage": stage, "reason": shown_name(text), **extra}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.count += 1
            self.notes += stage == "note"
            self.sources.add(record["source"])
            shown = " ".join(text.removeprefix(f"{stage}: ").split())[:200]  # the stage said once, one line
            self.reasons[f"{stage}: {shown}"] += 1


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file; other lines are passed over."""
    from clamp2_engine.jsonl import iter_jsonl

    return [obj for _n, obj, _reason in iter_jsonl(path) if obj is not None]


def describe_error(exc: BaseException) -> str:
    """A one-line, human-readable reason for an exception."""
    msg = first_line(exc, default="")
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


@dataclass
class RunSummary:
    """Counts for one batch run, printed as a Rich table at the end."""

    title: str
    counts: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)
    seconds: float | None = None  # the run's own measure of its time, when it ran elsewhere

    notes: dict[str, str] = field(default_factory=dict)  # rows that are not counts (e.g. the precision)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def note(self, key: str, value: str) -> None:
        self.notes[key] = value

    @property
    def elapsed(self) -> float:
        return self.seconds if self.seconds is not None else time.perf_counter() - self.started

    def as_dict(self) -> dict[str, Any]:
        return {**dict(self.counts), "seconds": round(self.elapsed, 3)}

    def print(self, errors: ErrorLog | None = None, out: Console | None = None) -> None:
        out = out or console
        table = Table(title=self.title, show_header=True)
        table.add_column("items")
        table.add_column("count", justify="right")
        for key, n in self.counts.items():
            table.add_row(key, str(n))
        for key, value in self.notes.items():
            table.add_row(key, value)
        table.add_row("seconds", f"{self.elapsed:.1f}")
        out.print(table)
        if errors is not None and errors.count:
            problems = errors.count - errors.notes
            said = [f"{problems} problem(s) with {len(errors.sources)} input(s)"] if problems else []
            said += [f"{errors.notes} note(s) on fallbacks taken"] if errors.notes else []
            out.print(f"[yellow]{' and '.join(said)} logged in {errors.path}[/yellow]")
            for reason, n in errors.reasons.most_common(5):  # each on one line of the terminal
                out.print(
                    f"  {n} x {reason}", overflow="ellipsis", no_wrap=True, highlight=False, markup=False
                )


@contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True):
    """A Rich progress bar on stderr; yields ``advance(n=1, note=None)``, where ``note`` (e.g. "1,200
    pieces" while the bar counts files) is shown after the bar. Disabled for short or quiet work."""
    if not enabled:
        yield lambda n=1, note=None: None
        return
    if not console.is_terminal:  # a log, not a terminal: a plain line now and then
        yield plain_progress(description, total)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total, note="")

        def advance(n: int = 1, note: str | None = None) -> None:
            progress.update(task, advance=n, **({"note": note} if note is not None else {}))

        yield advance


PLAIN_EVERY = 15.0  # seconds between progress lines when stderr is not a terminal


def plain_progress(description: str, total: int | None) -> Callable[..., None]:
    """``advance(n=1, note=None)`` that prints ``description: done/total (note)`` to stderr every
    ``PLAIN_EVERY`` seconds, and when long work is done (short work prints nothing)."""
    done, last, said = 0, time.monotonic(), False

    def advance(n: int = 1, note: str | None = None) -> None:
        nonlocal done, last, said
        done += n
        now = time.monotonic()
        if now - last >= PLAIN_EVERY or (said and total is not None and done >= total):
            last, said = now, True
            of = f"/{total}" if total is not None else ""
            print(f"{description}: {done}{of}" + (f" ({note})" if note else ""), file=sys.stderr, flush=True)

    return advance
