"""clamp2-engine's collections as MCP tools, for AI assistants: ``clamp2-engine mcp -c NAME`` (stdio) and
``/mcp`` in ``serve`` (streamable HTTP, behind the server's API key).

Tools: ``search`` (a text in any language; modality, mode, filters, k -> hits; an empty result says why),
``similar`` (pieces like / unlike given ids), ``read_piece`` (metadata, summaries, the ABC text when the
piece's file is ABC, links to its score and audio when served) and ``list_collections`` (sizes, models,
facets). Inputs are typed (their JSON schemas come from the signatures); the library's errors are tool
errors, one line each, and never stop the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal, Protocol

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from clamp2_engine.errors import first_line
from clamp2_engine.search import Query, Result
from clamp2_engine.store.fields import FACETS

MAX_ABC_CHARS = 20_000  # of a piece's ABC text in `read_piece`
INSTRUCTIONS = (
    "Search a collection of music (scores and MIDI) by a description in any language, find pieces like "
    "others, and read a piece's metadata and notation. Hits carry ids for `similar` and `read_piece`."
)


class Library(Protocol):
    """What the tools use: ``clamp2-engine mcp`` opens a store itself; ``serve`` hands its service."""

    default: str

    def find(self, query: Query, name: str | None) -> Result: ...

    def piece(self, pid: str, name: str | None) -> dict[str, Any]: ...

    def abc_text(self, piece: dict[str, Any]) -> str | None: ...

    def collections(self) -> list[dict[str, Any]]: ...

    def facets(self, name: str) -> dict[str, list[dict[str, Any]]]: ...


class Hit(BaseModel):
    rank: int
    id: str = Field(description="the piece's id (for `similar` and `read_piece`)")
    title: str | None = None
    composer: str | None = None
    score: float
    modality: str = Field(description="what matched: abc, mtf, text, lexical or hybrid")


class Hits(BaseModel):
    collection: str
    mode: str
    hits: list[Hit]
    why: str | None = Field(None, description="why nothing was found (a filter no piece meets)")
    notices: list[str] = []


class Piece(BaseModel):
    id: str
    collection: str
    title: str | None = None
    composer: str | None = None
    metadata: dict[str, Any] = {}
    summary_en: str | None = None
    summary_nen: dict[str, Any] | None = None
    abc: str | None = Field(None, description="the piece's interleaved ABC, when its file is ABC")
    links: dict[str, str] = Field({}, description="its score (SVG), audio and MIDI on the server")


class CollectionEntry(BaseModel):
    name: str
    points: int | None = None
    model: str | None = None
    facets: dict[str, list[str]] = Field({}, description="the most common values of each facet field")


class Collections(BaseModel):
    collections: list[CollectionEntry]


def _hits(result: Result, name: str) -> Hits:
    rows = [
        Hit(
            rank=h.rank,
            id=h.id,
            title=h.payload.get("title"),
            composer=h.payload.get("composer"),
            score=h.score,
            modality=h.modality,
        )
        for h in result.hits
    ]
    return Hits(collection=name, mode=result.mode, hits=rows, why=result.why, notices=result.notices)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a thread; every error a tool error of one line (the server goes on)."""
    try:
        return await asyncio.to_thread(fn, *args)
    except ToolError:
        raise
    except Exception as exc:  # the library's errors: bad filters, unknown ids, a store in use ...
        raise ToolError(first_line(exc)) from None


def build_server(library: Library, base_url: str | None = None) -> MCPServer:
    """The MCP server over ``library``; ``base_url``: where ``serve`` answers (links in ``read_piece``)."""
    server = MCPServer(name="clamp2-engine", instructions=INSTRUCTIONS)

    @server.tool()
    async def search(
        text: str = Field(description="what to look for, in any language (a title, a composer, a mood...)"),
        collection: str | None = Field(None, description="default: the served collection"),
        modality: Literal["any", "abc", "mtf", "text"] = "any",
        mode: Literal["hybrid", "semantic", "lexical"] = "hybrid",
        filters: list[str] = Field([], description="e.g. composer=bach, genres==Folk, composer!=mozart"),
        k: int = Field(10, ge=1, le=100),
    ) -> Hits:
        """Search a music collection by a text in any language; pieces ranked by meaning and words."""
        name = collection or library.default
        query = await _call(Query, text, modality, mode, k, 0, tuple(filters))
        return _hits(await _call(library.find, query, name), name)

    @server.tool()
    async def similar(
        like: list[str] = Field(description="ids of pieces to be like", min_length=1),
        unlike: list[str] = Field([], description="ids of pieces to steer away from"),
        collection: str | None = None,
        modality: Literal["any", "abc", "mtf", "text"] = "any",
        k: int = Field(10, ge=1, le=100),
    ) -> Hits:
        """Pieces like the given ones (and unlike others), by the music itself."""
        name = collection or library.default
        query = await _call(lambda: Query(modality=modality, k=k, like=tuple(like), unlike=tuple(unlike)))
        return _hits(await _call(library.find, query, name), name)

    @server.tool()
    async def read_piece(id: str, collection: str | None = None) -> Piece:
        """A piece's metadata, summaries, ABC notation and links."""
        name = collection or library.default
        found = await _call(library.piece, id, name)
        payload = found["payload"]
        links = (
            {k: f"{base_url.rstrip('/')}/pieces/{found['id']}/{v}" for k, v in LINKS.items()}
            if base_url
            else {}
        )
        abc = await asyncio.to_thread(library.abc_text, found)
        return Piece(
            id=found["id"],
            collection=found["collection"],
            title=payload.get("title"),
            composer=payload.get("composer"),
            metadata={k: v for k, v in payload.items() if k not in ("summary_en", "summary_nen")},
            summary_en=payload.get("summary_en"),
            summary_nen=payload.get("summary_nen") if isinstance(payload.get("summary_nen"), dict) else None,
            abc=abc[:MAX_ABC_CHARS] if abc else None,
            links=links,
        )

    @server.tool()
    async def list_collections() -> Collections:
        """The collections, with their sizes, models and the most common values of their facets."""
        rows = []
        for row in await _call(library.collections):
            facets: dict[str, list[str]] = {}
            if row.get("points"):
                found = await _call(library.facets, row["name"])
                facets = {f: [v["value"] for v in values[:20]] for f, values in found.items()}
            rows.append(
                CollectionEntry(
                    name=row["name"], points=row.get("points"), model=row.get("model"), facets=facets
                )
            )
        return Collections(collections=rows)

    return server


LINKS = {"score": "score.svg", "audio": "audio", "midi": "midi"}


class StoreLibrary:
    """A store this process opened (``clamp2-engine mcp``): a search session per collection, and one lock,
    since the tools run in threads."""

    def __init__(self, store: Any, default: str, options: Any = None):
        import threading

        self.store, self.default, self.options = store, default, options
        self.sessions: dict[str, Any] = {}
        self.lock = threading.Lock()

    def session(self, name: str | None) -> Any:
        from clamp2_engine.search import SearchSession

        name = name or self.default
        if name not in self.sessions:
            self.sessions[name] = SearchSession.open(self.store, name, self.options)
        return self.sessions[name]

    def find(self, query: Query, name: str | None) -> Result:
        with self.lock:
            return self.session(name).find(query)

    def piece(self, pid: str, name: str | None) -> dict[str, Any]:
        from clamp2_engine.store.pieces import get_piece

        with self.lock:
            return get_piece(self.session(name).collection, pid)

    def abc_text(self, piece: dict[str, Any]) -> str | None:
        from clamp2_engine.store.pieces import abc_text

        with self.lock:
            return abc_text(self.session(piece["collection"]).collection, piece)

    def collections(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.store.list()

    def facets(self, name: str) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            coll = self.session(name).collection
            return {f: [{"value": v, "count": n} for v, n in coll.facet(f, 20)] for f in FACETS}
