"""``demo``: the engine end to end, offline, with the small model shipped in the package."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from clamp2_engine.cli.options import store_client, store_options

NEXT_STEPS = (
    'next: clamp2-engine search "your words" -c {c}   |   clamp2-engine shell -c {c}   |   '
    "clamp2-engine ingest YOUR_FOLDER -c mine --model demo"
)


@click.command()
@click.option("--pieces", type=click.IntRange(1), default=None, help="Ingest only the first N demo pieces.")
@click.option(
    "-k", "--top-k", type=click.IntRange(1, 100), default=5, show_default=True, help="Hits per search."
)
@click.option(
    "--query", "queries", multiple=True, help="Your own searches instead of the examples (repeatable)."
)
@click.option(
    "--json", "as_json", is_flag=True, help="JSON output (the ingest counts, then hits as JSON Lines)."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@store_options
@click.pass_context
def demo(
    ctx: click.Context,
    pieces: int | None,
    top_k: int,
    queries: tuple[str, ...],
    as_json: bool,
    quiet: bool,
    **store: Any,
) -> None:
    """Try the engine offline: ingest a few hundred pieces of music21's corpus with the shipped `demo`
    model into the embedded store (collection `demo`), then run example searches, one of them in German.

    The demo model is a toy trained on music21's corpus metadata (genre, composer, voices, meter, key); real
    retrieval needs the released CLaMP 2 weights (`--model clamp2`). A second run is quick: converted
    pieces are kept and unchanged pieces are not embedded again.
    """
    from clamp2_engine.cli.ingest import run_ingest, say_indexing
    from clamp2_engine.cli.search import search
    from clamp2_engine.errors import require_extra

    require_extra("convert")  # the demo converts music21's scores
    from clamp2_engine.ingest.demo import DEMO_COLLECTION, DEMO_CORPUS, QUERIES, prepare_demo_corpus
    from clamp2_engine.ingest.run import IngestOptions
    from clamp2_engine.loading import LoadOptions
    from clamp2_engine.paths import data_dir

    def say(msg: str) -> None:
        click.secho(msg, err=True, bold=True)

    target = Path(data_dir()) / "demo" / DEMO_CORPUS
    say(f"[1/3] preparing music21 pieces in {target}")
    prepared = prepare_demo_corpus(target, pieces, jobs=os.cpu_count() or 1)
    for name, reason in prepared.problems[:5]:
        click.echo(f"  skipped {name}: {reason}", err=True)
    click.echo(
        f"  {prepared.pieces} pieces: {prepared.converted} converted now, "
        f"{prepared.pieces - prepared.converted - len(prepared.problems)} already there",
        err=True,
    )
    say(f"[2/3] ingesting them into collection '{DEMO_COLLECTION}' with the demo model")
    options = IngestOptions(
        corpus_name=DEMO_CORPUS,
        render=False,
        model=LoadOptions(model="demo"),
        progress=not (quiet or as_json),
        on_index=None if (quiet or as_json) else say_indexing,
    )
    with store_client(dict(store)) as opened:
        run_ingest(opened, prepared.root, DEMO_COLLECTION, options, as_json=as_json)
    say("[3/3] searching")
    for text in queries or [q.text for q in QUERIES]:
        ctx.invoke(search, query=text, collection=DEMO_COLLECTION, top_k=top_k, as_json=as_json, **store)
    if not as_json:
        click.echo(NEXT_STEPS.format(c=DEMO_COLLECTION), err=True)
