"""``clamp2-engine models``: the known checkpoints and where they are cached."""

from __future__ import annotations

import json

import click


@click.group()
def models() -> None:
    """Known checkpoints (released weights on the Hugging Face Hub)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_models(as_json: bool) -> None:
    """List the known checkpoints and whether they are in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    from clamp2_engine.checkpoints import REGISTRY

    rows = []
    for k in REGISTRY.values():
        cached = try_to_load_from_cache(k.repo_id, k.filename)
        rows.append({"name": k.name, "kind": k.kind, "repo": k.repo_id, "file": k.filename,
                     "cached": cached if isinstance(cached, str) else None, "description": k.description})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Known models")
    for col in ("name", "kind", "repo", "cached", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["kind"], r["repo"], r["cached"] or "no", r["description"])
    Console().print(table)
