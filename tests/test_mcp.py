"""The MCP tools, through the `mcp` package's own client: `clamp2-engine mcp` over stdio, and `/mcp` in
`serve` over streamable HTTP behind the API key."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from helpers import Server, ingest_serve_corpus
from index_helpers import model_args
from mcp import Client, StdioServerParameters  # the [mcp] extra (in [dev])

QUERY = "a solemn chorale for four voices"
KEY = "mcp-test-key-0123456789"


@pytest.fixture(scope="module")
def served(parity_dir, tmp_path_factory) -> Path:
    return ingest_serve_corpus(tmp_path_factory.mktemp("mcp"), parity_dir)


async def session_run(target, steps):
    async with Client(target, read_timeout_seconds=120) as client:
        return [await client.call_tool(name, args) for name, args in steps]


STEPS = [
    ("search", {"text": QUERY, "k": 3}),
    ("search", {"text": QUERY, "filters": ["composer=nobody-at-all"]}),
    ("search", {"text": QUERY, "filters": ["=="]}),
    ("list_collections", {}),
]


def check(results) -> str:
    found, empty, bad, listed = results
    assert not found.is_error, found.content
    hits = found.structured_content["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert {"id", "title", "score", "modality"} <= set(hits[0])
    assert empty.structured_content["hits"] == []
    assert "nobody-at-all" in empty.structured_content["why"]
    assert bad.is_error  # a tool error, one line; the server goes on
    assert "bad filter" in bad.content[0].text
    assert "\n" not in bad.content[0].text
    [row] = listed.structured_content["collections"]
    assert row["name"] == "music"
    assert row["points"] > 0
    return hits[0]["id"]


def test_mcp_over_stdio_answers_a_search_with_hits(served, parity_dir, tmp_path):
    args = [
        "-m",
        "clamp2_engine",
        "mcp",
        "-c",
        "music",
        "--qdrant-path",
        str(served),
        *map(str, model_args(parity_dir)),
    ]
    env = {
        "CLAMP2_HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "1",
        "CLAMP2_DTYPE": "fp32",
        "PATH": "/usr/bin:/bin",
    }
    target = StdioServerParameters(command=sys.executable, args=args, env=env)
    first = check(asyncio.run(session_run(target, STEPS)))
    more = asyncio.run(
        session_run(
            target,
            [
                ("similar", {"like": [first], "k": 2}),
                ("read_piece", {"id": first}),
                ("read_piece", {"id": "nope"}),
            ],
        )
    )
    similar, piece, missing = more
    assert first not in [h["id"] for h in similar.structured_content["hits"]]
    assert piece.structured_content["id"] == first
    assert piece.structured_content["metadata"]["source"]
    assert missing.is_error
    assert "not a point id" in missing.content[0].text


def test_mcp_in_serve_is_behind_the_api_key(served, parity_dir, tmp_path):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from clamp2_engine.serve.app import create_app
    from clamp2_engine.serve.service import ServeConfig
    from clamp2_engine.store import StoreSpec

    options = {
        "model": str(parity_dir / "checkpoints" / "clamp2.pth"),
        "text_model": str(parity_dir / "text_model"),
    }
    from clamp2_engine.loading import LoadOptions

    config = ServeConfig(
        StoreSpec(path=served),
        "music",
        LoadOptions.of(options),
        api_key=KEY,
        cache_dir=tmp_path / "cache",
        public_url="http://127.0.0.1:1234",
    )
    server = Server(create_app(config))
    try:
        url = f"{server.url}/mcp"
        keyed = streamable_http_client(
            url, http_client=httpx2.AsyncClient(headers={"X-API-Key": KEY}, timeout=120)
        )
        first = check(asyncio.run(session_run(keyed, STEPS)))
        [piece] = asyncio.run(
            session_run(
                streamable_http_client(
                    url, http_client=httpx2.AsyncClient(headers={"X-API-Key": KEY}, timeout=120)
                ),
                [("read_piece", {"id": first})],
            )
        )
        assert piece.structured_content["links"]["score"] == f"http://127.0.0.1:1234/pieces/{first}/score.svg"
        assert httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).status_code == 401
    finally:
        server.stop()
