"""``/mcp``: the MCP tools (:mod:`clamp2_engine.integrations.mcp_server`) over the served collections,
as streamable HTTP behind the server's API key, when the ``mcp`` package is installed (``[mcp]``)."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI

from clamp2_engine.serve.service import Service
from clamp2_engine.store.pieces import abc_text

PATH = "/mcp"


class ServiceLibrary:
    """The served collections as the MCP tools use them: the service's sessions, lock and readers."""

    def __init__(self, svc: Service):
        self.svc, self.default = svc, svc.config.collection

    def find(self, query: Any, name: str | None) -> Any:
        return self.svc.search(query, None, name)

    def piece(self, pid: str, name: str | None) -> dict[str, Any]:
        return self.svc.piece(pid, name)

    def abc_text(self, piece: dict[str, Any]) -> str | None:
        coll = self.svc.collection(piece["collection"])
        return self.svc.locked(abc_text, coll, piece, self.svc.config.corpus_roots, coll=coll)

    def collections(self) -> list[dict[str, Any]]:
        return self.svc.locked(self.svc.store.list)

    def facets(self, name: str) -> dict[str, list[dict[str, Any]]]:
        return self.svc.facets(self.svc.collection(name))


def install(app: FastAPI, svc: Service, base_url: str | None = None) -> Callable[[], Any] | None:
    """``/mcp`` on ``app``; returns the context manager the app's lifespan runs it in (``None``: the
    ``mcp`` package is not installed, and there is no ``/mcp``)."""
    if importlib.util.find_spec("mcp") is None:
        return None
    from clamp2_engine.integrations.mcp_server import build_server

    server = build_server(ServiceLibrary(svc), base_url)
    starlette = server.streamable_http_app(streamable_http_path=PATH, stateless_http=True, json_response=True)
    app.router.routes.extend(starlette.routes)

    @contextlib.asynccontextmanager
    async def running() -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return running
