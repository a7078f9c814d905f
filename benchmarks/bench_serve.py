"""`clamp2-engine serve` under load: text searches from 1, 8 and 32 concurrent clients against a
20,000-point collection, with a full-size text tower (XLM-R base shape, random weights): PyTorch fp32, and
the ONNX Runtime fp32 export an ingest prepares (what `serve` uses after `ingest`), with and without
cross-request batching. Requests/s, p50/p95 latency and, at 32 clients, the efficiency: requests/s over
cores / one query's encode time in a batch of 16 on one thread (the served tower's own, and PyTorch
fp32's), that encode time measured on batches drawn from the load's own texts. Measured over real HTTP on
127.0.0.1 with the server in its own process: at least ``--per-client`` requests from each client after
every connection was answered once, the rate counted while every client was busy (from the start until
the last request was sent; after that fewer clients are left, and a worker may idle).

    python benchmarks/bench_serve.py [--points 20000] [--requests 48] [--per-client 16] [--no-write]
    python benchmarks/bench_serve.py --soak 10     # the mixed soak of `serve -c demo` (benchmarks/soak.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
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


def texts(total: int) -> list[str]:
    """The load's query texts: each one different (nothing can be answered from a cache)."""
    return [QUERIES[i % len(QUERIES)] + f" {i}" for i in range(total)]


async def load(url: str, clients: int, total: int) -> tuple[float, list[float]]:
    """``total`` text searches from ``clients`` concurrent keep-alive connections: requests/s while all
    of them were busy (from the start until the last request was sent; after that fewer clients are left),
    and every request's latency."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    queue = texts(total)
    finished: list[float] = []
    drained: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            await post_json(reader, writer, "/search", {"query": "warm up", "k": 10})
            counted.append(1)
            if len(counted) == clients:
                warmed.set()
            await ready.wait()
            while queue:
                text = queue.pop()
                if not queue:
                    drained.append(time.perf_counter())
                sent = time.perf_counter()
                await post_json(reader, writer, "/search", {"query": text, "k": 10})
                finished.append(time.perf_counter())
                latencies.append(finished[-1] - sent)
        finally:
            writer.close()

    counted: list[int] = []
    ready, warmed = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.ensure_future(client()) for _ in range(clients)]
    await warmed.wait()  # every connection made and answered once before the clock starts
    started = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    busy = [t for t in finished if t <= drained[0]]
    return len(busy) / (drained[0] - started), latencies


def prepare(store: Path, home: Path) -> Path:
    """The ONNX fp32 text tower an ingest prepares for the collection, exported into ``home``'s cache."""
    from clamp2_engine.cli.prepare import prepare_query_model
    from clamp2_engine.store import StoreSpec, open_store

    os.environ["CLAMP2_HOME"] = str(home)
    try:
        with open_store(StoreSpec(path=store)) as opened:
            out = prepare_query_model(opened, "bench", print)
    finally:
        del os.environ["CLAMP2_HOME"]
    if out is None:
        raise SystemExit("the text tower could not be exported (is the [onnx] extra installed?)")
    return Path(out)


def one_query_seconds(
    folder: Path,
    served: list[str],
    onnx_dir: Path | None = None,
    batch: int = 16,
    batches: int = 8,
    rounds: int = 3,
) -> float:
    """One query's encode time in a batch of ``batch``, on one thread, by PyTorch fp32 or (``onnx_dir``)
    ONNX Runtime: ``batches`` batches drawn at random from the texts ``served`` (their lengths, so their
    padding, as the load sends them), the best of ``rounds``."""
    import random

    import torch

    from clamp2_engine.pretrained import CLaMP2

    torch.set_num_threads(1)
    if onnx_dir is None:
        model = CLaMP2.from_pretrained(folder / "base.pth", TEXT_MODEL, towers=("text",), dtype="fp32")
    else:
        model = CLaMP2.from_pretrained(backend="onnx", onnx_dir=onnx_dir, towers=("text",), threads=1)
    pick = random.Random(0)
    drawn = [pick.sample(served, batch) for _ in range(batches)]
    model.encode_text(drawn[0])
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for one in drawn:
            model.encode_text(one)
        best = min(best, time.perf_counter() - started)
    torch.set_num_threads(os.cpu_count() or 1)
    return best / (batch * batches)


def run_server(store: Path, wait_ms: float, workers: int | None, home: Path) -> tuple[subprocess.Popen, str]:
    """``serve`` of the bench collection with ``home`` as its data folder (an ONNX export there is used)."""
    port = free_port()
    env = {**os.environ, "CLAMP2_QUERY_THREADS": "1", "HF_HUB_OFFLINE": "1", "CLAMP2_HOME": str(home)}
    env["CLAMP2_DTYPE"] = "fp32"  # PyTorch at fp32 on every CPU (`auto` is bf16 where that is native)
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


def spread(runs: list[tuple[float, list[float]]], ideal: float) -> str:
    """The median window's efficiency, and the range of all windows' when there are several."""
    median = f"{runs[len(runs) // 2][0] / ideal:.3f}"
    if len(runs) == 1:
        return median
    return f"{median} ({runs[0][0] / ideal:.3f}-{runs[-1][0] / ideal:.3f})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=48, help="Requests per client count, at least.")
    ap.add_argument("--per-client", type=int, default=16, help="Requests per client, at least.")
    ap.add_argument(
        "--windows", type=int, default=3, help="Timed windows of the busiest load (their median is reported)."
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
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = build(folder, args.points)
        plain, prepared = folder / "home-torch", folder / "home-onnx"
        plain.mkdir()
        export = prepare(store, prepared)
        served = texts(max(args.requests, args.per_client * max(CLIENTS)))  # the busiest load's
        per_query = {
            "torch fp32": one_query_seconds(folder, served),
            "onnx fp32": one_query_seconds(folder, served, export),
        }
        ideal = {tower: cores / seconds for tower, seconds in per_query.items()}
        servers = (
            (f"batched, {cores} encode workers of 1 thread", "onnx fp32", 4.0, None),
            (f"batched, {cores} encode workers of 1 thread", "torch fp32", 4.0, None),
            ("batched, 1 encode worker of 1 thread", "torch fp32", 4.0, 1),
            ("one request at a time", "torch fp32", 0.0, 1),
        )
        for label, tower, wait_ms, workers in servers:
            home = prepared if tower.startswith("onnx") else plain
            proc, url = run_server(store, wait_ms, workers, home)
            try:
                served = httpx_get(url + "/healthz").get("query_model")
                if served != tower:
                    raise SystemExit(f"the server encodes queries with {served}, not {tower}")
                for clients in CLIENTS:
                    total = max(args.requests, args.per_client * clients)
                    last = clients == max(CLIENTS)
                    # the busiest load of each server with every core: the median of several windows
                    windows = args.windows if last and workers is None else 1
                    runs = sorted(
                        (asyncio.run(load(url, clients, total)) for _ in range(windows)),
                        key=operator.itemgetter(0),
                    )
                    rate, lat = runs[len(runs) // 2]
                    row = [label, tower, clients, f"{rate:.1f}"]
                    row += [f"{np.percentile(lat, q) * 1000:.0f}" for q in (50, 95)]
                    row += (
                        [spread(runs, ideal[tower]), spread(runs, ideal["torch fp32"])] if last else ["", ""]
                    )
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
            "weights, `CLAMP2_QUERY_THREADS=1`): PyTorch fp32, and the ONNX Runtime fp32 export that an ingest "
            "prepares (`serve` uses it after `ingest`; it keeps fp32's hits, `bench_query.py`). k=10, hybrid "
            "search (one thread each: `--search-threads 1`, the default; one at a time, the default on 2 cores), real HTTP on 127.0.0.1 (keep-alive connections of a lean asyncio client, about 0.2 ms of "
            f"CPU a request; at least {args.per_client} requests a client after every connection was answered "
            "once, requests/s counted while all the clients were busy, until the last request was sent). "
            f"Efficiency at {max(CLIENTS)} clients: requests/s (the median of {args.windows} timed windows for a "
            f"server with every core, their range in brackets) over {cores} cores / one query's encode time in "
            "a batch of 16 on one thread (8 batches drawn from the load's own texts, best of 3), measured in "
            "the same run: "
            + ", ".join(f"{t} {s * 1000:.1f} ms (at most {ideal[t]:.1f} requests/s)" for t, s in per_query.items())
            + "; of the served tower's own, and of PyTorch fp32's.",
            "",
            table(
                ["server", "text tower", "clients", "requests/s", "p50 ms", "p95 ms", "efficiency (own tower)",
                 "efficiency (vs torch fp32)"],
                rows,
            ),
        ]
    )  # fmt: skip
    print(md)
    if not args.no_write:
        write_section("serve", md)


def httpx_get(url: str) -> dict:
    import httpx

    return httpx.get(url, timeout=30).json()


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
