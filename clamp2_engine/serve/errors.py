"""How the server answers what goes wrong: the API key and body-size guard, and one handler per kind of
error. A client's mistake is a 4xx ``{"error": "one line"}`` with no traceback anywhere; a server fault is
a 500 whose traceback goes to the log."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from clamp2_engine.checkpoints import CheckpointError, ModelNotFoundError
from clamp2_engine.errors import CollectionError, CollectionNotFoundError, StoreError, first_line
from clamp2_engine.serve.render import RenderError
from clamp2_engine.serve.service import PieceNotFound, Service

# the page and the API docs carry no data (the page's API calls carry the key)
OPEN_PATHS = ("/", "/favicon.ico", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
HEALTH_PATHS = ("/healthz", "/livez")  # open too with ServeConfig.public_health (the default)
NO_MODEL_PATHS = (*OPEN_PATHS, *HEALTH_PATHS, "/metrics", "/collections")  # answered while starting
log = logging.getLogger("clamp2_engine.serve")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


class Guard:
    """ASGI middleware: a request id (the client's ``X-Request-ID`` or a new one, echoed), the API key
    (constant-time, never logged), readiness (503 while the model loads), the body size, the time limit
    until the answer starts, and a 500 for a server fault (a plain ASGI layer: Starlette's
    ``BaseHTTPMiddleware`` cost about 0.7 ms of CPU a request)."""

    def __init__(self, app: Callable[..., Awaitable[None]], svc: Service):
        self.app, self.svc = app, svc
        public = svc.config.public_health
        self.open_paths = (*OPEN_PATHS, *HEALTH_PATHS) if public else OPEN_PATHS

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        rid = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid  # request.state.request_id
        began = asyncio.get_running_loop().create_future()  # done when the answer starts

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", ()), (b"x-request-id", rid.encode())],
                }
                if not began.done():
                    began.set_result(True)
            await send(message)

        refusal = self.refusal(scope["path"], headers)
        if refusal is not None:
            await refusal(scope, receive, send_with_id)
            return
        await self.answer(scope, receive, send_with_id, began)

    async def answer(self, scope: dict, receive: Callable, send: Callable, began: asyncio.Future) -> None:
        """The app's answer (``began`` is done when it starts); a 503 when it has not started within the
        time limit, a 500 for a fault before it started."""
        limit = self.svc.config.request_timeout
        task = asyncio.ensure_future(self.app(scope, receive, send))
        task.add_done_callback(lambda _t: began.done() or began.set_result(False))
        try:
            await asyncio.wait_for(asyncio.shield(began), limit)
        except TimeoutError:
            task.cancel()
            await error(503, f"the request took longer than {limit:.0f} s")(scope, receive, send)
            return
        except asyncio.CancelledError:  # the server stops: so does the request
            task.cancel()
            raise
        try:
            await task  # the rest of the answer (a streamed body) takes the time it takes
        except Exception:  # a server fault, answered here so that the connection stays open
            rid = scope["state"]["request_id"]
            log.exception("internal error, request id %s: %s %s", rid, scope["method"], scope["path"])
            if began.result():  # too late for another answer: the connection ends
                raise
            await error(500, f"internal error (request id {rid}; see the server's log)")(scope, receive, send)

    def refusal(self, path: str, headers: Headers) -> JSONResponse | None:
        """The answer to a request refused before the app sees it, or ``None``."""
        config, svc = self.svc.config, self.svc
        if (
            config.api_key
            and path not in self.open_paths
            and not path.startswith(("/static/", "/docs-assets/"))
        ):
            scheme, _, token = headers.get("authorization", "").partition(" ")
            bearer = token.strip() if scheme.lower() == "bearer" else ""  # the scheme is case-insensitive
            given = headers.get("x-api-key") or bearer
            if not hmac.compare_digest(given.encode(), config.api_key.encode()):
                return error(401, "missing or wrong API key (X-API-Key or Authorization: Bearer)")
        if (
            not svc.ready
            and path not in NO_MODEL_PATHS
            and not path.startswith(("/static/", "/collections/", "/docs-assets/"))
        ):
            if svc.failure:
                reason = f"the server cannot serve: {svc.failure}"
            elif svc.waiting:
                reason = f"the server is waiting for its collection: {svc.waiting}"
            else:
                reason = "the server is starting: the model is loading"
            return JSONResponse({"error": reason}, 503, headers={"Retry-After": "5"})
        size = headers.get("content-length")
        if size and (not size.isdigit() or int(size) > config.max_body):
            return error(413, f"the request body is over {config.max_body // 2**20} MiB")
        return None


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


class BodyDeadline:
    """ASGI middleware: a request's body must arrive within ``seconds`` of its first read, chunked or
    not. A slower client's body ends there (the app sees the client leave) and it is answered 408."""

    def __init__(self, app: Callable[..., Awaitable[None]], seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        complete = late = False

        async def timed_receive() -> dict:
            nonlocal deadline, complete, late
            if complete:  # after the body: disconnect checks wait as long as they like
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.seconds
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                late = complete = True
                return {"type": "http.disconnect"}
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def answer(message: dict) -> None:
            if not late:
                await send(message)
            elif message["type"] == "http.response.start":  # whatever the app made of it: a 408
                late_answer = error(408, f"the request body did not arrive within {self.seconds:g} s")
                late_answer.headers["Connection"] = "close"  # the rest of the body is not waited for
                await late_answer(scope, receive, send)

        await self.app(scope, timed_receive, answer)


def install(app: FastAPI) -> None:
    """The exception handlers."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 413 and exc.detail == "Content Too Large":  # FastAPI's own body limit
            limit = request.app.state.service.config.max_body
            return error(413, f"the request body is over {limit // 2**20} MiB")
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":  # FastAPI's
            return error(400, "the request body could not be read (JSON in UTF-8, or a multipart form)")
        answer = error(exc.status_code, str(exc.detail))
        answer.headers.update(exc.headers or {})
        return answer

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        return error(422, f"{where}: {message}".strip(": "))

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

    @app.exception_handler(ModelNotFoundError)
    @app.exception_handler(CheckpointError)
    async def no_model(_request: Request, exc: Exception) -> JSONResponse:
        log.error("cannot load the collection's model: %s", first_line(exc))
        return error(503, "the collection's model cannot be loaded on this server (see its log)")
