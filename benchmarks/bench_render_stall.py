"""A search while a server synthesizes audio: does it wait behind the renders?

Builds the demo collection in a scratch data folder, starts ``clamp2-engine serve`` on 127.0.0.1, asks
for the audio of ``--renders`` different pieces at once (each a MIDI rendering and a SoundFont synthesis
in a worker process), and, once they are under way, times ``--searches`` searches one after the other.
Prints the search latencies beside the renders' own times and writes them to docs/benchmarks.md
(section ``render_stall``). The issue's bound: a search answered within 5 s while 16 renders run.

    python benchmarks/bench_render_stall.py [--renders 16] [--searches 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._report import machine, table, write_section  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--renders", type=int, default=16)
    ap.add_argument("--searches", type=int, default=5)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args(argv)
    import httpx

    home = Path(tempfile.mkdtemp(prefix="bench-render-"))
    env = {**os.environ, "CLAMP2_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "clamp2_engine"]
    subprocess.run([*cli, "demo", "--json"], env=env, check=True, capture_output=True)
    server = subprocess.Popen([*cli, "serve", "-c", "demo", "--port", str(args.port)], env=env)
    url = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(0.2)
        hits = httpx.post(f"{url}/search", json={"query": "a tune", "k": 100, "mode": "semantic"}, timeout=60)
        pieces = [h["id"] for h in hits.json()["hits"]][: args.renders]
        render_s: list[float] = []

        def render(pid: str) -> None:
            started = time.perf_counter()
            res = httpx.get(f"{url}/pieces/{pid}/audio", timeout=300)
            render_s.append(time.perf_counter() - started if res.status_code == 200 else float("nan"))

        threads = [threading.Thread(target=render, args=(pid,)) for pid in pieces]
        began = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(0.5)  # the renders are under way (a benchmark may wait for time; tests wait for states)
        search_s, pending = [], []
        for _ in range(args.searches):
            started = time.perf_counter()
            httpx.post(
                f"{url}/search", json={"query": "a sad waltz", "k": 10}, timeout=120
            ).raise_for_status()
            search_s.append(time.perf_counter() - started)
            pending.append(len(pieces) - len(render_s))
        for t in threads:
            t.join(600)
        all_renders = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(60)
    load = os.getloadavg()
    rows = [
        [
            "search while renders run (s)",
            f"{min(search_s):.3f}",
            f"{sorted(search_s)[len(search_s) // 2]:.3f}",
            f"{max(search_s):.3f}",
        ],
        [
            "one audio render (s)",
            f"{min(render_s):.2f}",
            f"{sorted(render_s)[len(render_s) // 2]:.2f}",
            f"{max(render_s):.2f}",
        ],
    ]
    body = (
        f"`python benchmarks/bench_render_stall.py --renders {args.renders} --searches {args.searches}` on "
        f"{machine()}; load average {load[0]:.1f} at the end.\n\n"
        + table(["", "min", "median", "max"], rows)
        + f"\n\n{len(pieces)} audio renders asked at once took {all_renders:.1f} s in all; renders still "
        f"pending when each search was answered: {pending}. The server's renders and uploads wait on their "
        "own threads (`music_threads`: twice the CPU count, at least 4), never on the threads searches use (the fault trial of issue 32 saw a search wait 31.7 s behind 32 renders when they shared one pool)."
    )
    print(body)
    if not args.no_write:
        write_section(
            "render_stall", "## A search while 16 renders run (`benchmarks/bench_render_stall.py`)\n\n" + body
        )


if __name__ == "__main__":
    main()
