"""``clamp2-engine mcp``: the collections as MCP tools over stdio, for desktop AI assistants."""

from __future__ import annotations

from typing import Any

import click

from clamp2_engine.cli.options import (
    collection_name,
    model_options,
    pop_model_options,
    store_client,
    store_options,
)


@click.command()
@click.option(
    "-c", "--collection", required=True, callback=collection_name, help="The collection searched by default."
)
@store_options
@model_options()
def mcp(collection: str, **kwargs: Any) -> None:
    """Answer MCP over stdin and stdout (search, similar, read_piece, list_collections) for an AI assistant
    that starts this command; `serve` offers the same tools at /mcp. Nothing but MCP is written to
    stdout."""
    from clamp2_engine.integrations.mcp_server import StoreLibrary, build_server

    options = pop_model_options(kwargs)
    with store_client(kwargs) as store:
        build_server(StoreLibrary(store, collection, options)).run("stdio")
