"""The HTTP server around the app: uvicorn with its fastest HTTP/1.1 protocol (httptools where it is
installed, as in the ``serve`` extra; h11 otherwise), plus what uvicorn lacks — a limit on the time a
client may take to send a request's headers (a slow client gets 408 and the connection is closed, so idle
or dribbling sockets cannot pile up) — and a graceful stop: on SIGTERM, the requests in flight finish (up to
the request time limit), then the process exits."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from clamp2_engine.paths import data_dir

HEADER_TIMEOUT = 10.0  # seconds from the first byte of a request (or the connection) to its last header


def timeout_response(seconds: float) -> bytes:
    body = f'{{"error": "the request headers did not arrive within {seconds:g} s"}}'.encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HeaderTimer:
    """A header-read limit (``header_timeout`` seconds) for a uvicorn HTTP protocol: the clock runs while
    the connection waits for a request's headers, from the connection or its first byte. A protocol says
    whether it is waiting for a head (:meth:`waiting_for_head`) and whether part of one came."""

    header_timeout = HEADER_TIMEOUT
    header_timer: asyncio.TimerHandle | None = None
    transport: asyncio.Transport

    def waiting_for_head(self) -> bool:
        raise NotImplementedError

    def head_begun(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self.arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if self.waiting_for_head():  # a request begun, its headers not all here yet
            if self.header_timer is None:
                self.arm()
        else:
            self.disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def arm(self) -> None:
        self.header_timer = asyncio.get_running_loop().call_later(self.header_timeout, self.headers_late)

    def disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def headers_late(self) -> None:
        self.header_timer = None
        if self.transport.is_closing() or not self.waiting_for_head():
            return
        if self.head_begun():  # part of a request came: say why it is closed
            self.transport.write(timeout_response(self.header_timeout))
        self.transport.close()


class H11HeaderTimeout(HeaderTimer, H11Protocol):
    """uvicorn's h11 protocol with the header-read limit."""

    def waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def head_begun(self) -> bool:
        return bool(self.conn.trailing_data[0])


@cache
def httptools_protocol() -> type | None:
    """uvicorn's httptools protocol with the header-read limit, or ``None`` without httptools."""
    if importlib.util.find_spec("httptools") is None:
        return None
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsHeaderTimeout(HeaderTimer, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header-read limit: a head is pending from a message's
        first byte until its headers are complete (or from the connection until its first request)."""

        head_pending = False

        def on_message_begin(self) -> None:
            self.head_pending = True
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self.head_pending = False
            super().on_headers_complete()

        def waiting_for_head(self) -> bool:
            return self.head_pending or self.cycle is None

        def head_begun(self) -> bool:
            return self.head_pending

    return HttpToolsHeaderTimeout


def protocol(header_timeout: float = HEADER_TIMEOUT, http: str = "auto") -> type[Any]:
    """The protocol class with its limit (uvicorn takes a class): ``http`` ``httptools``, ``h11``, or
    ``auto`` (httptools where it is installed: with uvloop, a fifth less CPU a request than h11 and
    asyncio, docs/benchmarks.md)."""
    if http not in ("auto", "httptools", "h11"):
        raise ValueError(f"http must be auto, httptools or h11, not {http!r}")
    fast = httptools_protocol() if http in ("auto", "httptools") else None
    if http == "httptools" and fast is None:
        raise RuntimeError("httptools is not installed: pip install 'clamp2-engine[serve]'")
    base = fast or H11HeaderTimeout
    return type(base.__name__, (base,), {"header_timeout": header_timeout})


def server_config(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 8000,
    header_timeout: float = HEADER_TIMEOUT,
    http: str = "auto",
) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: the header-timeout protocol (``http``: see :func:`protocol`;
    uvicorn's own event loop choice, uvloop where it is installed), and a graceful stop that waits for
    requests in flight up to the request time limit."""
    limit = app.state.service.config.request_timeout
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol(header_timeout, http),
        log_level="info",
        timeout_graceful_shutdown=int(limit) + 5,
    )


def scratch(root: Path) -> Path:
    """This process's temporary folder under ``root``; those of processes no longer running (a server
    killed with SIGKILL) are removed."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.iterdir():
        if folder.name.isdigit() and not running(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
    mine = root / str(os.getpid())
    mine.mkdir(exist_ok=True)
    return mine


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


def run(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` until SIGINT or SIGTERM. The process's temporary files (uploads, worker pools'
    sockets) go to a folder of its own under the data folder, removed when it stops; what a killed
    server leaves behind is removed when the next one starts."""
    mine = scratch(data_dir() / "tmp")
    tempfile.tempdir = str(mine)
    try:
        uvicorn.Server(server_config(app, host, port)).run()
    finally:
        shutil.rmtree(mine, ignore_errors=True)
