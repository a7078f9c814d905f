"""``clamp2-engine models``: the known checkpoints and where they are cached."""

from __future__ import annotations

import json

import click

from clamp2_engine.cli.options import table_console


@click.group()
def models() -> None:
    """Known checkpoints: released weights on the Hugging Face Hub, and the `demo` model shipped here."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_models(as_json: bool) -> None:
    """List the known checkpoints and where they are on this machine (shipped, cached, or not yet)."""
    from huggingface_hub import try_to_load_from_cache

    from clamp2_engine.checkpoints import ASSETS, REGISTRY

    rows = []
    for k in REGISTRY.values():
        if k.packaged:
            local = ASSETS / k.filename
            cached = str(local) if local.is_file() else None
        else:
            found = try_to_load_from_cache(k.repo_id, k.filename)
            cached = found if isinstance(found, str) else None
        rows.append(
            {
                "name": k.name,
                "kind": k.kind,
                "repo": k.repo_id or "shipped with clamp2-engine",
                "file": k.filename,
                "cached": cached,
                "sha256": k.sha256,
                "description": k.description,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="Known models")
    for col in ("name", "kind", "repo", "cached", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["kind"], r["repo"], r["cached"] or "no", r["description"])
    table_console().print(table)
