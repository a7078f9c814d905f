"""Answers before the model loads: a newcomer's one-shot commands against `import torch, transformers`.

    python benchmarks/bench_first_hour.py [--rounds 3] [--no-write]

Ingests a few bench pieces with the `demo` model (ingest prepares the query tower's ONNX export at its
end, as it does for every user), then times, in fresh processes and in one run: `python -c "import torch,
transformers"`; a second one-shot `search`; a search whose `--filter` matches nothing; a search with a
`--model` file that is not there. Each should finish sooner than the import alone. Writes the
``first_hour`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, table, write_section  # noqa: E402

BENCH = ROOT / "tests" / "fixtures" / "bench-corpus" / "abc"


def timed(cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd[:4])} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="bench-first-hour-"))
    env = {**os.environ, "CLAMP2_HOME": str(home), "HF_HUB_OFFLINE": "1", "CLAMP2_PREPARE_QUERIES": "1"}
    cli = [sys.executable, "-m", "clamp2_engine"]
    try:
        corpus = home / "corpus"
        corpus.mkdir()
        for f in sorted(BENCH.glob("*.abc"))[:8]:
            shutil.copy(f, corpus / f.name)
        t0 = time.perf_counter()
        timed([*cli, "ingest", str(corpus), "-c", "mine", "--model", "demo", "--jobs", "0"], env)
        ingest_s = time.perf_counter() - t0
        cases = {
            '`python -c "import torch, transformers"`': (
                [sys.executable, "-c", "import torch, transformers"],
                (0,),
            ),
            '`search "a chorale" -c mine` (a second one-shot search)': (
                [*cli, "search", "a chorale", "-c", "mine"],
                (0,),
            ),
            "`search ... --filter composer=bahc` (matches nothing)": (
                [*cli, "search", "a chorale", "-c", "mine", "--filter", "composer=bahc"],
                (0,),
            ),
            "`search ... --model /nonexistent/model.pth`": (
                [*cli, "search", "a chorale", "-c", "mine", "--model", "/nonexistent/model.pth"],
                (1,),
            ),
        }
        seconds = {
            name: [timed(cmd, env, ok) for _ in range(args.rounds)] for name, (cmd, ok) in cases.items()
        }
        load = os.getloadavg()[0]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    base = min(next(iter(seconds.values())))
    rows = [
        [name, " / ".join(f"{s:.2f}" for s in runs), f"{min(runs):.2f}", f"{min(runs) / base:.2f}"]
        for name, runs in seconds.items()
    ]
    text = "\n".join(
        [
            "## A newcomer's one-shot commands (`benchmarks/bench_first_hour.py`)",
            "",
            f"Machine: {machine()}; load average {load:.1f} at the end. Eight bench pieces ingested with "
            f"`--model demo` ({ingest_s:.0f} s, the query tower's ONNX export included), then each command "
            f"in a fresh process, {args.rounds} runs, in one run of the script:",
            "",
            table(["command", "seconds per run", "best", "x the import"], rows),
        ]
    )
    print(text)
    if not args.no_write:
        write_section("first_hour", text)


if __name__ == "__main__":
    main()
