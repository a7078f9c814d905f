"""``serve``: one process that owns the model and the store and answers over HTTP (API and search page)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from clamp2_engine.cli.options import (
    collection_name,
    model_options,
    pop_model_options,
    resolve_spec,
    store_options,
)


def _corpus_roots(values: tuple[str, ...]) -> dict[str, str]:
    roots = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            raise click.BadParameter(
                f"{value!r}: expected NAME=FOLDER with an existing folder", param_hint="--corpus-root"
            )
        roots[name] = str(Path(folder).resolve())
    return roots


@click.command()
@click.option(
    "-c", "--collection", required=True, callback=collection_name, help="The collection served by default."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--api-key-env",
    default=None,
    metavar="VAR",
    help="Require the key held by $VAR on every API call (never logged).",
)
@click.option(
    "--cors-origin",
    "cors",
    multiple=True,
    metavar="ORIGIN",
    help="Allow browser calls from ORIGIN (repeatable).",
)
@click.option(
    "--batch-wait-ms",
    type=click.FloatRange(0, 100),
    default=4.0,
    show_default=True,
    help="How long a text batch waits for the next request while they keep coming (0: no cross-request batching).",
)
@click.option(
    "--corpus-root", "roots", multiple=True, metavar="NAME=FOLDER", help="Where corpus NAME's files are now."
)
@click.option(
    "--public-health/--private-health",
    default=True,
    show_default=True,
    help="Let /healthz and /livez answer without the API key (for load balancers and monitors).",
)
@click.option(
    "--encode-workers",
    type=click.IntRange(1, 256),
    default=None,
    help="Text passes run at once, each on $CLAMP2_QUERY_THREADS threads (1 unless set); unset: cores / threads.",
)
@click.option(
    "--search-threads",
    type=click.IntRange(0, 256),
    default=1,
    show_default=True,
    help="Threads one search of an embedded collection uses (0: Qdrant Edge's default, from the CPU count); "
    "concurrent requests share the cores, up to one search per 8 cores at once.",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="Where clients reach this server (the links the MCP tool read_piece gives); default: none.",
)
@store_options
@model_options()
def serve(
    collection: str,
    host: str,
    port: int,
    api_key_env: str | None,
    cors: tuple[str, ...],
    batch_wait_ms: float,
    roots: tuple[str, ...],
    public_health: bool,
    public_url: str | None,
    encode_workers: int | None,
    search_threads: int,
    **kwargs: Any,
) -> None:
    """Serve the collection given by -c over HTTP: a JSON API (/search, /search/music, /embed/text, /embed/music,
    /collections, /pieces/ID[/score.svg|/midi]; /healthz, /livez, /metrics; docs at /docs; MCP at /mcp
    with the [mcp] extra) and a search page at /. The port answers at once; /healthz says "starting" until the model is loaded. SIGTERM
    lets requests in flight finish."""
    from clamp2_engine.serve.app import create_app
    from clamp2_engine.serve.server import run
    from clamp2_engine.serve.service import ServeConfig

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise click.ClickException(f"--api-key-env {api_key_env}: ${api_key_env} is not set")
    options = pop_model_options(kwargs)
    spec = resolve_spec(*(kwargs.pop(k, None) for k in ("qdrant_path", "qdrant_url", "qdrant_api_key_env")))
    config = ServeConfig(
        spec,
        collection,
        options,
        api_key=api_key,
        cors_origins=list(cors),
        batch_wait=batch_wait_ms / 1000,
        corpus_roots=_corpus_roots(roots),
        public_health=public_health,
        public_url=public_url,
        encode_workers=encode_workers,
        search_threads=search_threads,
    )
    click.echo(
        f"serving {collection} from {spec.describe()} on http://{host}:{port}/ (API docs: /docs)", err=True
    )
    run(create_app(config), host, port)
