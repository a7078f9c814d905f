"""`clamp2-engine serve` under load: text searches from 1, 8 and 32 concurrent clients against a
20,000-point collection, with a full-size text tower (XLM-R base shape, random weights), with and without
cross-request batching. Requests/s and p50/p95 latency, measured over real HTTP on 127.0.0.1 with the
server in its own process.

    python benchmarks/bench_serve.py [--points 20000] [--requests 48] [--no-write]
    python benchmarks/bench_serve.py --soak 10     # the mixed soak of `serve -c demo` (benchmarks/soak.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, table, write_section  # noqa: E402
from benchmarks.bench_search import QUERIES  # noqa: E402
from benchmarks.bench_store import payload, vectors  # noqa: E402

TEXT_MODEL = ROOT / "tests" / "fixtures" / "clamp2-parity" / "text_model"
CLIENTS = (1, 8, 32)


def build(folder: Path, n: int) -> Path:
    """A full-size random CLaMP 2 checkpoint and an n-point collection made by it."""
    import torch

    from clamp2_engine.checkpoints import save_checkpoint
    from clamp2_engine.models import CLaMP2Config, CLaMP2Model
    from clamp2_engine.pretrained import CLaMP2
    from clamp2_engine.store import Point, StoreSpec, open_store, point_id

    torch.manual_seed(0)
    ckpt = save_checkpoint(folder / "base.pth", CLaMP2Model(CLaMP2Config()).state_dict())
    identity = CLaMP2.from_pretrained(ckpt, TEXT_MODEL, towers=("text",)).identity
    data = vectors(n, identity.embed_dim)
    with open_store(StoreSpec(path=folder / "edge")) as store:
        coll = store.ensure("bench", identity, {"model": str(ckpt), "text_model": str(TEXT_MODEL)})
        for start in range(0, n, 512):
            batch = range(start, min(n, start + 512))
            coll.upsert(
                [
                    Point(point_id(str(i)), {"abc" if i % 2 == 0 else "mtf": data[i]}, payload(i))
                    for i in batch
                ]
            )
        coll.optimize()
    return folder / "edge"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def post_json(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: dict
) -> bytes:
    """One keep-alive HTTP/1.1 POST and its answer's body: a client as lean as a load generator sharing
    the server's cores can be (httpx costs about 2 ms of CPU a request)."""
    data = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n\r\n".encode()
        + data
    )
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    answer = await reader.readexactly(length)
    if status != 200:
        raise SystemExit(f"{path} answered {status}: {answer[:200]!r}")
    return answer


async def load(url: str, clients: int, total: int) -> tuple[float, list[float]]:
    """``total`` text searches from ``clients`` concurrent keep-alive connections: seconds, latencies."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    queue = list(range(total))
    counted: list[int] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            await post_json(reader, writer, "/search", {"query": "warm up", "k": 10})
            counted.append(1)
            if len(counted) == clients:
                warmed.set()
            await ready.wait()
            while queue:
                i = queue.pop()
                started = time.perf_counter()
                await post_json(
                    reader, writer, "/search", {"query": QUERIES[i % len(QUERIES)] + f" {i}", "k": 10}
                )
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    ready, warmed = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.ensure_future(client()) for _ in range(clients)]
    await warmed.wait()  # every connection made and answered once before the clock starts
    started = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - started, latencies


def one_query_seconds(folder: Path, batch: int = 16, rounds: int = 5) -> float:
    """One short query's encode time in a batch of ``batch``, on one thread (best of ``rounds``)."""
    import torch

    from clamp2_engine.pretrained import CLaMP2

    torch.set_num_threads(1)
    model = CLaMP2.from_pretrained(folder / "base.pth", TEXT_MODEL, towers=("text",))
    texts = [QUERIES[i % len(QUERIES)] + f" {i}" for i in range(batch)]
    model.encode_text(texts)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        model.encode_text(texts)
        best = min(best, time.perf_counter() - started)
    torch.set_num_threads(os.cpu_count() or 1)
    return best / batch


def run_server(store: Path, wait_ms: float, workers: int | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "CLAMP2_QUERY_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "clamp2_engine", "serve", "-c", "bench", "--qdrant-path", str(store)]
    cmd += ["--port", str(port), "--batch-wait-ms", str(wait_ms)]
    cmd += ["--encode-workers", str(workers)] if workers else []
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=None if os.environ.get("SERVE_STDERR") else subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument(
        "--requests", type=int, default=48, help="Requests per client count (at least 6 per client)."
    )
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--soak", type=float, metavar="MINUTES", help="Run the mixed soak instead (about 10).")
    args = ap.parse_args(argv)
    if args.soak:
        run_soak(args.soak, not args.no_write)
        return
    load_before = os.getloadavg()[0]
    rows = []
    cores = os.cpu_count() or 1
    servers = (
        (f"batched, {cores} encode workers of 1 thread", 4.0, None),
        ("batched, 1 encode worker of 1 thread", 4.0, 1),
        ("one request at a time", 0.0, 1),
    )
    efficiency: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = build(Path(tmp), args.points)
        per_query = one_query_seconds(Path(tmp))
        ideal = cores / per_query
        for label, wait_ms, workers in servers:
            proc, url = run_server(store, wait_ms, workers)
            try:
                for clients in CLIENTS:
                    total = max(args.requests, 6 * clients)
                    seconds, lat = asyncio.run(load(url, clients, total))
                    row = [
                        label,
                        clients,
                        f"{total / seconds:.1f}",
                        f"{np.percentile(lat, 50) * 1000:.0f}",
                        f"{np.percentile(lat, 95) * 1000:.0f}",
                    ]
                    if clients == max(CLIENTS):
                        efficiency[label] = total / seconds / ideal
                        row.append(f"{efficiency[label]:.2f}")
                    else:
                        row.append("")
                    print(row, flush=True)
                    rows.append(row)
            finally:
                proc.terminate()
                proc.wait(30)
    md = "\n".join(
        [
            "## Serve: text search under concurrent load (`benchmarks/bench_serve.py`)",
            "",
            f"{machine()}; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 cores "
            f"shared by the server and the load generator). {args.points:,} points, full-size text tower (random "
            "weights, `CLAMP2_QUERY_THREADS=1`), k=10, hybrid search, real HTTP on 127.0.0.1 (32 keep-alive "
            "connections of a lean asyncio client, about 0.2 ms of CPU a request). Efficiency: requests/s at "
            f"{max(CLIENTS)} clients over {cores} cores / one query's encode time in a batch of 16 on one thread "
            f"({per_query * 1000:.1f} ms here, measured in the same run: at most {ideal:.1f} requests/s).",
            "",
            table(["server", "clients", "requests/s", "p50 ms", "p95 ms", "efficiency"], rows),
        ]
    )
    print(md)
    if not args.no_write:
        write_section("serve", md)


def run_soak(minutes: float, write: bool) -> None:
    from benchmarks.soak import serve_demo, soak, summary

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        home, port = Path(tmp), free_port()
        proc = serve_demo(home, port)
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            uploads = sorted((home / "demo").rglob("*.abc"))[:50]
            result = asyncio.run(soak(url, proc.pid, minutes, uploads))
        finally:
            proc.terminate()
            proc.wait(60)
    rows, note = summary(result, minutes)
    md = "\n".join(
        [
            "## Serve: a mixed soak (`benchmarks/bench_serve.py --soak`)",
            "",
            f"{machine()}; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (2 "
            f"cores shared by the server and the load generator). `serve -c demo` for {minutes:g} minutes: four "
            "text searchers (modes, filters, more like this), one score viewer, one uploader, one embedder "
            "(40 texts a second), one abusive client cycling through 13 bad requests, and one client that "
            "stops sending its body, all at once over real HTTP on 127.0.0.1.",
            "",
            table(["requests", "count", "statuses", "p50 ms", "p95 ms", "p99 ms"], rows),
            "",
            note + ".",
        ]
    )
    print(md)
    if write:
        write_section("serve-soak", md)


if __name__ == "__main__":
    main()
