"""Summarizer throughput against the scripted local chat-completions server with a fixed latency.

Run from the repository root: ``python -m benchmarks.bench_summarize [--latency 0.05]``. The server runs
in its own process (``python -m tests.llm_server``), so its threads do not share the client's GIL.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._report import machine, table, write_section
from clamp2_engine.ingest.summarize import summarize_items

REPO = Path(__file__).resolve().parents[1]


def _items(n: int) -> list[dict]:
    return [
        {"title": f"Piece {i}", "composer": "Anon", "genres": ["Folk"], "filepaths": [f"abc/{i}.abc"]}
        for i in range(n)
    ]


def _measure(base_url: str, concurrency: int, n: int) -> tuple[float, float]:
    """(wall seconds, client CPU ms per item) of one run of ``n`` items."""
    with tempfile.TemporaryDirectory() as tmp:
        cpu = time.process_time()
        report = summarize_items(
            _items(n),
            Path(tmp) / "out.jsonl",
            base_url=base_url,
            model="bench",
            concurrency=concurrency,
            progress=False,
        )
        cpu = time.process_time() - cpu
    assert report.done == n, report.as_dict()
    return report.seconds, 1000 * cpu / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, nargs="+", default=[0.05, 0.5], help="seconds per answer")
    ap.add_argument("--rounds", type=int, default=20, help="requests per worker in each measurement")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()

    rows = []
    for latency in args.latency:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.llm_server", "--latency", str(latency)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            base_url = server.stdout.readline().strip()
            _measure(base_url, 2, 4)  # warm-up: lazy imports, first connections
            for c in args.concurrency:
                n = c * args.rounds
                seconds, cpu_ms = _measure(base_url, c, n)
                rate, ideal = n / seconds, c / latency
                rows.append(
                    [
                        f"{latency * 1000:.0f}",
                        c,
                        n,
                        f"{seconds:.2f}",
                        f"{rate:.1f}",
                        f"{ideal:.0f}",
                        f"{100 * rate / ideal:.0f} %",
                        f"{cpu_ms:.1f}",
                    ]
                )
                print(
                    f"latency {latency * 1000:.0f} ms, concurrency {c:>3}: {n} items in {seconds:.2f} s = "
                    f"{rate:.1f} items/s (ideal {ideal:.0f}), client CPU {cpu_ms:.1f} ms/item",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=10)
    md = (
        "## summarize\n\n`python -m benchmarks.bench_summarize`: `summarize_items` against the scripted local "
        "chat-completions server (`tests/llm_server.py`, in its own process) that answers every request after a "
        "fixed latency; the official `openai` client over HTTP on 127.0.0.1, answers validated and appended to "
        "OUT. Ideal = concurrency / latency. Client CPU is the summarizing process's CPU time per item (the "
        "server runs on the same cores, so at low latency and high concurrency the machine, not the "
        "latency, sets the pace).\n\n"
        + table(
            [
                "latency ms",
                "concurrency",
                "items",
                "seconds",
                "items/s",
                "ideal items/s",
                "of ideal",
                "client CPU ms/item",
            ],
            rows,
        )
        + f"\n\nMachine: {machine()}."
    )
    print(md)
    if not args.no_write:
        write_section("bench_summarize", md)


if __name__ == "__main__":
    main()
