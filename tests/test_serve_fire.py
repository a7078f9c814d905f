"""Serve under fire: fair turns for large requests, uploads whose workers die with their request, slow
clients, server faults with a request id, a graceful SIGTERM. Over real HTTP (uvicorn on 127.0.0.1),
against a server with short limits so that each case takes seconds."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers import Server, copy_store, dense_midi, ingest_serve_corpus, raw
from index_helpers import model_args

from clamp2_engine.serve.app import create_app
from clamp2_engine.serve.batching import MicroBatcher, tokens
from clamp2_engine.serve.models import MAX_TEXT_CHARS, MAX_TEXT_VOLUME
from clamp2_engine.serve.server import scratch
from clamp2_engine.serve.service import ServeConfig, Service
from clamp2_engine.store import StoreSpec

LIMITS = {"request_timeout": 10.0, "upload_timeout": 3.0, "body_timeout": 1.0}
LONG = ("Ein langes Stück über Musik und Harmonie, " * 100)[:MAX_TEXT_CHARS]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, parity_dir):
    root = tmp_path_factory.mktemp("fire")
    return root, ingest_serve_corpus(root, parity_dir)


@pytest.fixture(scope="module")
def server(corpus):
    root, store = corpus
    config = ServeConfig(StoreSpec(path=store), "music", cache_dir=root / "cache", **LIMITS)
    srv = Server(create_app(config), header_timeout=1.0)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def text_passes(client: httpx.Client) -> float:
    """Forward passes of the text tower so far (the batcher's histogram count in /metrics)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("clamp2_text_batch_size_count"):
            return float(line.split()[-1])
    return 0.0


def wait_for(state: Callable[[], bool], what: str, limit: float = 120.0) -> None:
    """Wait until ``state()`` holds (``limit`` seconds only keep a broken server from hanging the run)."""
    deadline = time.monotonic() + limit
    while not state():
        assert time.monotonic() < deadline, f"{what} never came"
        time.sleep(0.01)


def workers() -> list[int]:
    """Processes descended from this one that are conversion workers (children of the fork server)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return [pid for child in children.get(os.getpid(), []) for pid in children.get(child, [])]


def rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# 4: one request starves the rest -> fair turns


def test_a_search_waits_at_most_one_pass_of_a_maximal_embed(client):
    texts = [LONG] * (MAX_TEXT_VOLUME // MAX_TEXT_CHARS)
    client.post("/embed/text", json={"texts": [LONG]})  # the batcher learns the encoder's speed
    done: dict[str, float] = {}

    def embed() -> None:
        started = time.monotonic()
        res = client.post("/embed/text", json={"texts": texts})
        assert res.status_code == 200, res.text
        assert len(res.json()["vectors"]) == len(texts)
        done["embed"] = time.monotonic() - started

    passes = text_passes(client)
    thread = threading.Thread(target=embed)
    thread.start()
    wait_for(lambda: text_passes(client) > passes, "the embed's first pass")
    res = client.post("/search", json={"query": "chorale", "mode": "semantic"})
    answered_during_embed = "embed" not in done
    thread.join(120)
    assert res.status_code == 200
    assert answered_during_embed, f"the search waited for the whole embed ({done['embed']:.2f} s)"


def test_the_text_volume_of_a_request_is_capped(client):
    res = client.post("/embed/text", json={"texts": [LONG] * (MAX_TEXT_VOLUME // MAX_TEXT_CHARS + 1)})
    assert res.status_code == 422
    assert res.json() == {
        "error": f"the texts are over {MAX_TEXT_VOLUME:,} characters together (send them in parts)"
    }


def test_the_batcher_takes_turns_and_keeps_order():
    passes: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        passes.append(texts)
        time.sleep(0.0001 * sum(tokens(t) for t in texts))
        return np.array([[float(hash(t) % 1000)] for t in texts])

    batcher = MicroBatcher(encode, max_wait=0.01, pass_seconds=0.05)

    async def scenario() -> tuple[np.ndarray, np.ndarray, int]:
        await batcher.encode(["warm"])
        big = asyncio.ensure_future(batcher.encode([f"{LONG[:2000]} {i}" for i in range(40)]))
        await asyncio.sleep(0.05)
        small = await batcher.encode(["a short query"])
        return await big, small, len(passes)

    try:
        big, small, after_small = asyncio.run(scenario())
    finally:
        batcher.close()
    assert [v[0] for v in big] == [float(hash(f"{LONG[:2000]} {i}") % 1000) for i in range(40)]
    assert small[0][0] == float(hash("a short query") % 1000)
    carrying = [i for i, p in enumerate(passes) if "a short query" in p]
    assert carrying
    assert carrying[0] <= 3
    assert len(passes) > 4  # the large request was cut into passes


# 3 and "killed when its request ends": uploads convert in a worker with time and memory limits


def test_an_abandoned_upload_kills_its_worker(server):
    assert not workers()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.url}/search/music", files={"file": ("dense.mid", dense_midi(400_000))}, timeout=1.0
        )
    wait_for(lambda: not workers(), "the end of the conversion whose client left", limit=30)


def test_a_dense_midi_is_answered_in_time_within_memory(client):
    data = dense_midi(1_000_000)  # 8 MB, the largest upload
    before = rss()
    res = client.post("/search/music", files={"file": ("dense.mid", data)})
    assert res.status_code == 422  # the conversion's limit, said before the request's (a 504)
    assert res.json()["error"] == f"the upload could not be converted within {LIMITS['upload_timeout']:g} s"
    assert rss() - before < 2**30
    assert client.post("/search", json={"query": "chorale"}).status_code == 200  # the server goes on
    metrics = client.get("/metrics").text
    killed = [line for line in metrics.splitlines() if line.startswith("clamp2_conversions_given_up_total")]
    assert killed
    assert float(killed[0].split()[-1]) >= 1


# 5: slow clients get 408 (slow headers: test_serve_http.py, on each HTTP protocol), and the conversion's
# reason comes before the request's limit


def test_a_slow_body_gets_408(server):
    head = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    for framing, start in (
        (b"Content-Length: 100\r\n\r\n", b'{"query": '),
        (b"Transfer-Encoding: chunked\r\n\r\n", b'a\r\n{"query": \r\n'),
    ):
        answer = raw(server.url, head + framing + start, 10)  # the server's 1 s, not our 10 s, ends it
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"the request body did not arrive within 1 s" in answer


# a server fault: a 500 whose request id the log carries


def test_a_server_fault_is_a_500_with_a_request_id(client, monkeypatch, caplog):
    def broken(self, name):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Service, "info", broken)
    caplog.set_level(logging.ERROR)
    res = client.get("/collections/music")
    assert res.status_code == 500
    rid = res.headers["x-request-id"]
    assert res.json() == {"error": f"internal error (request id {rid}; see the server's log)"}
    assert f"request id {rid}" in caplog.text
    assert "RuntimeError: a bug" in caplog.text
    given = client.get("/collections/music", headers={"X-Request-ID": "client-42"})
    assert given.headers["x-request-id"] == "client-42"
    for bad in ("bad id <script>", "x" * 65):  # (a control character is refused by the HTTP parser: 400)
        assert client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"] != bad


def test_an_answer_not_started_in_time_is_a_503_and_is_counted(corpus, tmp_path, monkeypatch):
    """The time limit runs until the answer starts: a request stuck past it is a 503 with its request
    id, counted in /metrics under its route; the server answers the next one."""
    _root, store = corpus
    copy = tmp_path / "edge"
    copy_store(store, copy)  # the module's server holds the original
    release = threading.Event()

    def stuck(self, name):
        release.wait(60)
        return {}

    config = ServeConfig(StoreSpec(path=copy), "music", cache_dir=tmp_path / "cache", request_timeout=1.0)
    srv = Server(create_app(config))
    try:
        monkeypatch.setattr(Service, "info", stuck)
        res = httpx.get(f"{srv.url}/collections/music", headers={"X-Request-ID": "slow-1"}, timeout=60)
        release.set()
        assert res.status_code == 503
        assert res.json() == {"error": "the request took longer than 1 s"}
        assert res.headers["x-request-id"] == "slow-1"
        assert httpx.get(f"{srv.url}/livez", timeout=60).status_code == 200
        metrics = httpx.get(f"{srv.url}/metrics", timeout=60).text
        assert 'clamp2_requests_total{method="GET",route="/collections/{name}",status="503"} 1.0' in metrics
    finally:
        release.set()
        srv.stop()


# operations: a graceful stop, and no temporary files left behind


def test_a_killed_servers_temporary_files_are_removed_at_the_next_start(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / dead.stdout.strip()
    (stale / "pymp-x").mkdir(parents=True)
    mine = scratch(tmp_path)
    assert mine.name == str(os.getpid())
    assert mine.is_dir()
    assert not stale.exists()
    assert scratch(tmp_path) == mine  # our own is kept


@pytest.mark.slow
def test_sigterm_lets_requests_in_flight_finish(corpus, parity_dir, tmp_path):
    root, store = corpus
    copy = tmp_path / "edge"
    copy_store(store, copy)  # one process per embedded shard
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CLAMP2_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path)}
    args = ["serve", "-c", "music", "--qdrant-path", str(copy), "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "clamp2_engine", *args, *map(str, model_args(parity_dir))],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        answer: dict[str, httpx.Response] = {}
        thread = threading.Thread(
            target=lambda: answer.setdefault(
                "res", httpx.post(f"{url}/embed/text", json={"texts": [LONG] * 64}, timeout=60)
            )
        )
        thread.start()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        thread.join(60)
        assert answer["res"].status_code == 200
        assert len(answer["res"].json()["vectors"]) == 64
        # uvicorn stops gracefully, then ends by the signal it caught (as a service manager expects)
        assert proc.wait(30) in (0, -signal.SIGTERM)
        assert "Finished server process" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list(tmp_path.glob("pymp-*"))
    assert not list((tmp_path / "home" / "tmp").glob("*/*"))


def test_passes_run_at_once_on_several_workers_and_keep_each_requests_order():
    """With two workers two passes run together (each waits for the other at a barrier, which one worker
    could never pass), and a request cut into passes that finish out of order still gets its vectors in
    its own order."""
    barrier = threading.Barrier(2, timeout=60)
    first_two = threading.Semaphore(2)

    def encode(texts: list[str]) -> np.ndarray:
        if first_two.acquire(blocking=False):
            barrier.wait()  # the first two passes: only together
        return np.array([[float(t.split()[-1])] for t in texts])

    batcher = MicroBatcher(encode, max_wait=0.0, workers=2, pass_seconds=1e-9)
    batcher.seconds_per_token = 1.0  # as if learnt: a budget of one text a pass

    async def scenario():
        return await asyncio.gather(
            batcher.encode([f"a {i}" for i in range(6)]), batcher.encode([f"b {i}" for i in range(10, 13)])
        )

    try:
        a, b = asyncio.run(scenario())
    finally:
        batcher.close()
    assert a[:, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert b[:, 0].tolist() == [10, 11, 12]
    assert batcher.batches == 9  # one text a pass


def test_passes_take_even_shares_and_wait_for_texts_still_coming():
    """With two workers, 32 searches queued at once go out as two passes of 16 (both cores busy, neither
    pass large); while one pass still runs, texts arriving a few ms apart join the free worker's next
    pass together, up to its fair share, instead of leaving one by one."""
    sizes: list[int] = []
    gates = [threading.Event() for _ in range(3)]
    two = threading.Barrier(2, timeout=60)

    def encode(texts: list[str]) -> np.ndarray:
        n = len(sizes)
        sizes.append(len(texts))
        if n < 2:
            two.wait()  # the first two passes run together
            gates[n].wait(60)
        return np.array([[float(t.split()[-1])] for t in texts])

    batcher = MicroBatcher(encode, max_wait=0.05, workers=2)

    async def scenario():
        first = asyncio.gather(*(batcher.encode([f"q {i}"]) for i in range(32)))
        while len(sizes) < 2:
            await asyncio.sleep(0.001)
        gates[0].set()  # one pass ends; the other runs on
        while batcher.in_flight > 16:
            await asyncio.sleep(0.001)
        later = []
        for i in range(16):  # arriving 2 ms apart
            later.append(asyncio.ensure_future(batcher.encode([f"q {100 + i}"])))
            await asyncio.sleep(0.002)
        while len(sizes) < 3:
            await asyncio.sleep(0.001)
        gates[1].set()
        return await first, await asyncio.gather(*later)

    try:
        first, later = asyncio.run(scenario())
    finally:
        for gate in gates:
            gate.set()
        batcher.close()
    assert sizes[:3] == [16, 16, 16]  # the late ones: one pass of their share ((16 + 16 running) / 2)
    assert [v[0][0] for v in first] == list(range(32))
    assert [v[0][0] for v in later] == list(range(100, 116))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_encode_threads_run_below_the_threads_that_answer_requests():
    import os

    from clamp2_engine.serve.batching import ENCODE_NICE

    seen: list[int] = []

    def encode(texts: list[str]) -> np.ndarray:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return np.zeros((len(texts), 1))

    batcher = MicroBatcher(encode, workers=1)
    try:
        asyncio.run(batcher.encode(["x"]))
    finally:
        batcher.close()
    assert seen == [os.getpriority(os.PRIO_PROCESS, 0) + ENCODE_NICE]
