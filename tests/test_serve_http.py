"""The HTTP/1.1 protocols `serve` runs on (httptools, the default where installed, and h11): the same
header-read limit on both, and keep-alive connections that wait between requests untouched by it."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from helpers import Server, raw

from clamp2_engine.serve.server import H11HeaderTimeout, httptools_protocol, protocol

pytest.importorskip("httptools", reason="the serve extra installs httptools")


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request):
    app = FastAPI()
    app.state.service = SimpleNamespace(config=SimpleNamespace(request_timeout=5.0))

    @app.get("/ping")
    async def ping() -> dict:
        return {"ok": True}

    srv = Server(app, ready=False, header_timeout=1.0, http=request.param)
    yield srv
    srv.stop()


def test_the_fastest_protocol_is_chosen_where_installed():
    assert issubclass(protocol(), httptools_protocol())
    assert issubclass(protocol(http="h11"), H11HeaderTimeout)
    assert protocol(2.5).header_timeout == 2.5
    with pytest.raises(ValueError, match="http must be"):
        protocol(http="h2")


def test_slow_headers_get_408_and_silent_sockets_are_closed(server):
    answer = raw(server.url, b"GET /ping HTTP/1.1\r\nHost: x\r\n", 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"the request headers did not arrive within 1 s" in answer
    closed: list[bool] = []
    assert raw(server.url, b"", 10, closed) == b""
    assert closed == [True]  # closed by the server without a word, before our 10 s


def read_answer(sock: socket.socket) -> bytes:
    answer = b""
    while b'{"ok":true}' not in answer:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection: {answer[:200]!r}"
        answer += chunk
    return answer


def test_a_head_in_pieces_and_a_connection_waiting_between_requests_are_answered(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\n")
        sock.sendall(b"Host: x\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # longer than the header limit, shorter than keep-alive's 5 s: no head is due
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(sock).startswith(b"HTTP/1.1 200")
