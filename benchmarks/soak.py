"""A bounded mixed soak of `clamp2-engine serve -c demo` (run by `bench_serve.py --soak MINUTES`):
text searches (modes, filters, "more like this"), engraved scores, uploaded scores, embed requests, and
one abusive client cycling through bad requests (bad names, malformed JSON, huge filters, junk and
oversized uploads, an over-limit chunked body, slow bodies), all at once over real HTTP on 127.0.0.1.

It reports, per kind of request: the count, the statuses, p50/p95/p99; the errors (any 5xx, any
connection failure, any unexpected status); and the server's resident memory over time (its drift from
the end of the warm-up to the end).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

WORDS = [
    "chorale",
    "a hornpipe",
    "jig",
    "bach",
    "Volkslied",
    "Tanz",
    "minuet in g",
    "bwv 278",
    "reel",
    "hymn",
]
FILTERS = [[], ["composer=bach"], ["genres=folk"], ["composer!=bach"]]
CHUNKED = "chunked"  # a 17 MiB body sent without Content-Length, made afresh for each request
ABUSE = (
    ("POST", "/search", {"json": {"query": "x", "collection": "../../etc"}}, (422,)),
    ("GET", "/collections/%2e%2e", {}, (422,)),
    ("POST", "/search", {"content": b"\xff\xfe{", "headers": {"Content-Type": "application/json"}}, (400,)),
    ("POST", "/search", {"json": {"query": "x", "filters": ["composer=" + "a" * 10_000_000]}}, (400, 422)),
    (
        "POST",
        "/search",
        {"json": {"query": "x", "filters": ["composer=" + "|".join(["b"] * 10_000)]}},
        (400,),
    ),
    ("POST", "/search", {"json": {"query": "\x00\x00"}}, (400,)),
    ("POST", "/search", {"json": {"query": "x", "k": "5"}}, (422,)),
    ("POST", "/search/music", {"files": {"file": ("junk.mid", os.urandom(4096))}}, (422,)),
    ("POST", "/search/music", {"files": {"file": ("empty.xml", b"")}}, (400,)),
    ("POST", "/search/music", {"files": {"file": ("big.mid", b"MThd" + b"\0" * (9 * 2**20))}}, (413,)),
    ("POST", "/embed/text", {"json": {"texts": ["x" * 4096] * 65}}, (422,)),
    ("GET", "/pieces/00000000-0000-0000-0000-000000000000", {}, (404,)),
    ("POST", "/search", {CHUNKED: True}, (413,)),
)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def chunks(n: int):
    for _ in range(n):
        yield b" " * 1024


class Tally:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter] = defaultdict(Counter)
        self.errors: list[str] = []

    def record(
        self, kind: str, started: float, status: int | str, expected: tuple[int, ...], what: str = ""
    ) -> None:
        self.latency[kind].append(time.perf_counter() - started)
        self.status[kind][status] += 1
        if status not in expected:
            self.errors.append(f"{what or kind}: {status}")


async def soak(url: str, pid: int, minutes: float, uploads: list[Path]) -> dict:
    import httpx

    tally, memory = Tally(), []
    stop_at = time.monotonic() + minutes * 60
    ids: list[str] = []

    async def call(http, kind, method, path, expected=(200,), **kw) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            res = await http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            tally.record(kind, started, type(exc).__name__, expected, f"{method} {path}")
            return None
        tally.record(kind, started, res.status_code, expected, f"{method} {path}")
        return res

    async def searcher(http, seed: int) -> None:
        rnd = random.Random(seed)
        while time.monotonic() < stop_at:
            body = {"query": rnd.choice(WORDS), "k": 10, "filters": rnd.choice(FILTERS)}
            body["mode"] = rnd.choice(["hybrid", "semantic", "lexical"])
            if ids and rnd.random() < 0.2:
                body = {"like": [rnd.choice(ids)], "k": 10}
            res = await call(http, "search", "POST", "/search", json=body)
            if res is not None and res.status_code == 200:
                ids[:] = (ids + [h["id"] for h in res.json()["hits"]])[-200:]

    async def scores(http) -> None:
        rnd = random.Random(1)
        while time.monotonic() < stop_at:
            if ids:
                await call(http, "score", "GET", f"/pieces/{rnd.choice(ids)}/score.svg", (200, 422))
            await asyncio.sleep(0.2)

    async def uploader(http) -> None:
        rnd = random.Random(2)
        while time.monotonic() < stop_at:
            path = rnd.choice(uploads)
            files = {"file": (path.name, path.read_bytes())}
            await call(http, "upload", "POST", "/search/music", (200, 422), files=files)
            await asyncio.sleep(0.5)

    async def embedder(http) -> None:
        while time.monotonic() < stop_at:
            await call(http, "embed", "POST", "/embed/text", json={"texts": [w * 40 for w in WORDS] * 4})
            await asyncio.sleep(1.0)

    async def abuser(http) -> None:
        i = 0
        while time.monotonic() < stop_at:
            method, path, kw, statuses = ABUSE[i % len(ABUSE)]
            if kw.get(CHUNKED):
                kw = {"content": chunks(17 * 1024), "headers": {"Content-Type": "application/json"}}
            await call(http, "abuse", method, path, statuses, **kw)
            i += 1
            await asyncio.sleep(0.1)

    async def slow_body() -> None:  # a client that stops sending its body: 408 after 30 s
        host, port = url.removeprefix("http://").split(":")
        while time.monotonic() < stop_at - 40:
            started = time.perf_counter()
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            await writer.drain()
            head = await reader.read(12)
            writer.close()
            tally.record("slow body", started, int(head[9:12] or 0), (408,))
            await asyncio.sleep(5)

    async def watch_memory() -> None:
        started = time.monotonic()
        while time.monotonic() < stop_at:
            memory.append((time.monotonic() - started, rss(pid)))
            await asyncio.sleep(2)

    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        await asyncio.gather(
            *(searcher(http, s) for s in range(4)),
            scores(http),
            uploader(http),
            embedder(http),
            abuser(http),
            slow_body(),
            watch_memory(),
        )
    return {"tally": tally, "memory": memory}


def serve_demo(home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "CLAMP2_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, "-m", "clamp2_engine", "demo", "-q", "--query", "x"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    cmd = [sys.executable, "-m", "clamp2_engine", "serve", "-c", "demo", "--port", str(port)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summary(result: dict, minutes: float) -> tuple[list[list], str]:
    tally: Tally = result["tally"]
    rows = []
    for kind, lat in sorted(tally.latency.items()):
        ms = np.percentile(lat, [50, 95, 99]) * 1000
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(tally.status[kind].items(), key=str))
        rows.append([kind, len(lat), statuses, f"{ms[0]:.0f}", f"{ms[1]:.0f}", f"{ms[2]:.0f}"])
    memory = result["memory"]
    warm = [m for t, m in memory if t >= min(60, minutes * 60 / 4)] or [m for _t, m in memory]
    mib = 2**20
    note = (
        f"errors (5xx, connection failures, unexpected statuses): {len(tally.errors)}"
        + (f" ({', '.join(sorted(set(tally.errors))[:5])})" if tally.errors else "")
        + f"; server RSS after warm-up {warm[0] / mib:.0f} MiB, peak {max(warm) / mib:.0f} MiB, "
        f"end {warm[-1] / mib:.0f} MiB (drift {(warm[-1] - warm[0]) / mib:+.0f} MiB)"
    )
    return rows, note
