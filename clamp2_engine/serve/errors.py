"""How the server answers what goes wrong: the API key and body-size guard, and one handler per kind of
error. A client's mistake is a 4xx ``{"error": "one line"}`` with no traceback anywhere; a server fault is
a 500 whose traceback goes to the log."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from clamp2_engine.errors import CollectionError, CollectionNotFoundError, StoreError, first_line
from clamp2_engine.serve.render import RenderError
from clamp2_engine.serve.service import PieceNotFound, Service

# the page and the API docs carry no data (the page's API calls carry the key)
OPEN_PATHS = ("/", "/favicon.ico", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
HEALTH_PATHS = ("/healthz", "/livez")  # open too with ServeConfig.public_health (the default)
NO_MODEL_PATHS = (*OPEN_PATHS, *HEALTH_PATHS, "/metrics", "/collections")  # answered while starting
log = logging.getLogger("clamp2_engine.serve")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def guard(svc: Service) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The middleware: the API key (constant-time, never logged), readiness (503 while the model loads),
    the body size, the request time limit."""
    config = svc.config
    open_paths = (*OPEN_PATHS, *HEALTH_PATHS) if config.public_health else OPEN_PATHS

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if config.api_key and path not in open_paths and not path.startswith("/static/"):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            bearer = token.strip() if scheme.lower() == "bearer" else ""  # the scheme is case-insensitive
            given = request.headers.get("x-api-key") or bearer
            if not hmac.compare_digest(given.encode(), config.api_key.encode()):
                return error(401, "missing or wrong API key (X-API-Key or Authorization: Bearer)")
        if (
            not svc.ready
            and path not in NO_MODEL_PATHS
            and not path.startswith(("/static/", "/collections/"))
        ):
            reason = f"cannot serve: {svc.failure}" if svc.failure else "starting: the model is loading"
            return JSONResponse({"error": f"the server is {reason}"}, 503, headers={"Retry-After": "5"})
        size = request.headers.get("content-length")
        if size and (not size.isdigit() or int(size) > config.max_body):
            return error(413, f"the request body is over {config.max_body // 2**20} MiB")
        try:
            return await asyncio.wait_for(call_next(request), config.request_timeout)
        except TimeoutError:
            return error(503, f"the request took longer than {config.request_timeout:.0f} s")

    return middleware


class HeadAsGet:
    """ASGI middleware: ``HEAD`` on every ``GET`` route, answered as the ``GET`` would be, without the body."""

    def __init__(self, app: Callable[..., Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: dict) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body"):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def install(app: FastAPI) -> None:
    """The exception handlers."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 413 and exc.detail == "Content Too Large":  # FastAPI's own body limit
            limit = request.app.state.service.config.max_body
            return error(413, f"the request body is over {limit // 2**20} MiB")
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return error(422, f"{where}: {first.get('msg', 'invalid request')}".strip(": "))

    @app.exception_handler(CollectionNotFoundError)
    @app.exception_handler(PieceNotFound)
    async def not_found(_request: Request, exc: Exception) -> JSONResponse:
        return error(404, first_line(exc))

    @app.exception_handler(CollectionError)
    @app.exception_handler(RenderError)
    async def unprocessable(_request: Request, exc: Exception) -> JSONResponse:
        return error(422, first_line(exc))

    @app.exception_handler(StoreError)
    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        return error(503, first_line(exc))

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        from clamp2_engine.checkpoints import CheckpointError, ModelNotFoundError

        if isinstance(exc, ModelNotFoundError | CheckpointError):  # the collection's model is not here
            log.error("cannot load the collection's model: %s", first_line(exc))
            return error(503, "the collection's model cannot be loaded on this server (see its log)")
        log.exception("internal error")  # a server fault: the traceback belongs in the log
        return error(500, "internal error (see the server's log)")
