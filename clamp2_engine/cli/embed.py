"""``clamp2-engine embed``: features for a folder of ABC / MTF / text files, as the reference extractors."""

from __future__ import annotations

import json

import click

from clamp2_engine.cli.options import (
    EXIT_CODES,
    allow_failures_option,
    exit_for_failures,
    model_options,
    open_model,
    pop_model_options,
)
from clamp2_engine.types import KINDS


@click.command(epilog=EXIT_CODES)
@click.argument("src", type=click.Path(exists=True))
@click.argument("dst", type=click.Path(file_okay=False))
@model_options()
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=None,
    help="Expected checkpoint kind (default: read from the checkpoint).",
)
@click.option(
    "--pooled/--raw",
    "pooled",
    default=False,
    help="Pooled, projected [1, D] features (--pooled, the reference extractors' --get_normalized) or raw "
    "hidden states [1, len, H] (default, as the reference extractors without it).",
)
@click.option("--overwrite", is_flag=True, help="Recompute outputs that already exist.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary table.")
@allow_failures_option
def embed(
    src: str,
    dst: str,
    kind: str | None,
    pooled: bool,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
    allow_failures: bool,
    **kwargs,
) -> None:
    """Embed SRC (a folder, walked recursively, or one file) into DST, one .npy per input.

    Music: .abc (interleaved ABC) and .mtf; text: .txt (CLaMP 2 only). DST mirrors SRC's tree.
    """
    from clamp2_engine.embed import embed_tree

    options = pop_model_options(kwargs)
    loaded: dict = {}

    def load(towers: tuple[str, ...]):
        model = open_model(options, towers=towers, kind=kind)
        if model.kind == "m3" and pooled:
            raise click.ClickException("M3 has no projection: its features are raw (drop --pooled)")
        loaded["kind"], loaded["precision"] = model.kind, model.precision
        return model

    summary, errors = embed_tree(
        src,
        dst,
        load,
        kind=kind,
        pooled=pooled,
        overwrite=overwrite,
        progress=not quiet and not as_json,
    )
    if loaded.get("precision"):  # what `--dtype auto` chose (or what was asked)
        summary.note("precision", loaded["precision"])
    if as_json:
        result = {**summary.as_dict(), "precision": loaded.get("precision")}
        click.echo(json.dumps({**result, "errors": str(errors.path) if errors.count else None}))
    elif not quiet:
        summary.print(errors)
    exit_for_failures(summary.counts.get("failed", 0), allow_failures)
