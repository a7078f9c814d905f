"""Serve when disks and clients misbehave: renders that must not stall searches, identical renders made
once, give-ups remembered, a collection busy at start, a sibling collection let go after each request,
text that is not text, ranges backwards, a damaged collection. Over real HTTP (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from helpers import Server, copy_store, ingest_serve_corpus

from clamp2_engine.serve.app import create_app
from clamp2_engine.serve.render import Renderer, RenderError
from clamp2_engine.serve.service import ServeConfig, Service
from clamp2_engine.store import StoreSpec, open_store


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, parity_dir):
    root = tmp_path_factory.mktemp("faults")
    return root, ingest_serve_corpus(root, parity_dir)


def serve(store: Path, cache: Path, **kw) -> tuple[Server, Service]:
    svc = Service(ServeConfig(StoreSpec(path=store), "music", cache_dir=cache, **kw))
    return Server(create_app(svc.config, svc)), svc


def ids(url: str, n: int = 40) -> list[str]:
    hits = httpx.post(f"{url}/search", json={"query": "music", "k": n, "mode": "semantic"}, timeout=60).json()
    return [h["id"] for h in hits["hits"] if (h["source"] or "").endswith((".abc", ".xml", ".musicxml"))]


def made(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    found = re.search(r'clamp2_renders_total\{result="made"\} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def test_renders_never_stall_a_search(corpus, tmp_path):
    _root, store = corpus
    srv, svc = serve(store, tmp_path / "cache", music_threads=2)
    try:
        pieces = ids(srv.url)
        assert len(pieces) >= 8
        results: list[int] = []

        def render(pid: str) -> None:
            results.append(httpx.get(f"{srv.url}/pieces/{pid}/pages.json", timeout=120).status_code)

        threads = [threading.Thread(target=render, args=(pid,)) for pid in (pieces * 2)[:16]]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while not svc.renderer.making:  # until renders are under way
            assert time.monotonic() < deadline
            time.sleep(0.01)
        res = httpx.post(f"{srv.url}/search", json={"query": "a chorale", "k": 3}, timeout=60)
        assert res.status_code == 200
        assert len(results) < 16  # answered while renders were still queued or running
        for t in threads:
            t.join(120)
        assert set(results) <= {200, 422}
    finally:
        srv.stop()


def test_identical_renders_are_made_once(corpus, tmp_path):
    _root, store = corpus
    srv, _svc = serve(store, tmp_path / "cache")
    try:
        pid = ids(srv.url)[0]
        before = made(srv.url)
        codes: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: codes.append(
                    httpx.get(f"{srv.url}/pieces/{pid}/pages.json", timeout=120).status_code
                )
            )
            for _ in range(6)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert codes == [200] * 6
        assert made(srv.url) - before == 1
    finally:
        srv.stop()


def test_a_render_given_up_is_remembered_for_a_while(tmp_path):
    source = tmp_path / "piece.abc"
    source.write_text("X:1\nK:C\nC|]\n")
    renderer = Renderer(tmp_path / "cache")
    calls = []

    def slow():
        calls.append(1)
        raise RenderError("timed out after 30 s")

    for _ in range(2):
        with pytest.raises(RenderError, match="timed out"):
            renderer._cached("svg", source, "", slow)
    assert len(calls) == 1  # the second asker is told at once
    with pytest.raises(RenderError, match="try again later"):
        renderer._cached("svg", source, "", slow)


HOLDER = textwrap.dedent(
    """
    import sys
    from clamp2_engine.store import StoreSpec, open_store
    store = open_store(StoreSpec(path=sys.argv[1]))
    store.collection(sys.argv[2]).count()
    print("ready", flush=True)
    sys.stdin.read()
    store.close()
    """
)


def hold(store: Path, name: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store), name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_collection_busy_at_start_is_served_once_free(corpus, tmp_path):
    _root, store = corpus
    copy = tmp_path / "edge"
    copy_store(store, copy)
    holder = hold(copy, "music")
    srv = Server(
        create_app(ServeConfig(StoreSpec(path=copy), "music", cache_dir=tmp_path / "c")), ready=False
    )
    try:
        res = wait_past_starting(srv)
        assert res.status_code == 503
        assert res.json()["status"] == "waiting"
        assert "in use" in res.json()["error"]
        assert httpx.get(f"{srv.url}/livez").status_code == 200
        busy = httpx.post(f"{srv.url}/search", json={"query": "x"})
        assert busy.status_code == 503
        assert busy.json()["error"].startswith("the server is waiting for its collection")
        holder.stdin.close()
        holder.wait(30)
        srv.wait_ready()  # tried again: ok once the holder is gone
        assert httpx.post(f"{srv.url}/search", json={"query": "x"}).status_code == 200
    finally:
        if holder.poll() is None:
            holder.kill()
        srv.stop()


def wait_past_starting(srv: Server) -> httpx.Response:
    """``/healthz`` once it says something other than ``starting``."""
    deadline = time.monotonic() + 60
    while (res := httpx.get(f"{srv.url}/healthz")).json()["status"] == "starting":
        assert time.monotonic() < deadline, "the server never got past starting"
        time.sleep(0.02)
    return res


def test_a_sibling_collection_is_let_go_after_each_request(corpus, tmp_path):
    _root, store = corpus
    copy = tmp_path / "edge"
    copy_store(store, copy)
    copy_store(copy / "music", copy / "other")
    srv, _svc = serve(copy, tmp_path / "cache")
    try:
        res = httpx.post(f"{srv.url}/search", json={"query": "x", "collection": "other"}, timeout=60)
        assert res.status_code == 200
        holder = hold(copy, "other")  # another process can have it: the server let it go
        holder.stdin.close()
        assert holder.wait(30) == 0
        assert httpx.post(f"{srv.url}/search", json={"query": "x", "collection": "other"}).status_code == 200
    finally:
        srv.stop()


def test_text_that_is_not_text_and_backward_ranges_are_json_4xx(corpus, tmp_path):
    _root, store = corpus
    srv, _svc = serve(store, tmp_path / "cache")
    try:
        body = b'{"query": "x", "filters": ["composer=\\ud800"]}'
        res = httpx.post(f"{srv.url}/search", content=body, headers={"content-type": "application/json"})
        assert res.status_code == 422
        assert "not valid text" in res.json()["error"]
    finally:
        srv.stop()


def test_check_range_answers_in_json_words():
    from starlette.exceptions import HTTPException

    from clamp2_engine.serve.routes.pieces import check_range

    check_range(None, 100)
    check_range("bytes=0-99", 100)
    check_range("bytes=-10", 100)
    for header, status in (("bytes=50-10", 400), ("bytes=x-y", 400), ("items=0-1", 400), ("bytes=200-", 416)):
        with pytest.raises(HTTPException) as err:
            check_range(header, 100)
        assert err.value.status_code == status


def test_a_damaged_collection_is_a_sentence_not_a_500(corpus, tmp_path):
    _root, store = corpus
    copy = tmp_path / "edge"
    copy_store(store, copy)
    with open_store(StoreSpec(path=copy)) as s:
        n = s.collection("music").count()
    record = copy / "music" / "collection.json"
    record.write_text(record.read_text().replace(f'"points": {n}', f'"points": {n + 5}'))
    srv = Server(
        create_app(ServeConfig(StoreSpec(path=copy), "music", cache_dir=tmp_path / "c")), ready=False
    )
    try:
        res = wait_past_starting(srv)
        assert res.json()["status"] == "failed"
        assert f"holds {n} of its {n + 5} points" in res.json()["error"]
        res = httpx.post(f"{srv.url}/search", json={"query": "x"})
        assert res.status_code == 503
        assert "collections repair music" in res.json()["error"]
    finally:
        srv.stop()
