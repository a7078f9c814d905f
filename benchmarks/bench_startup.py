"""A one-shot `clamp2-engine search`, from process start to printed hits, with the base-size text tower.

    python benchmarks/bench_startup.py [--rounds 3] [--work DIR] [--no-write]

A collection is ingested with a CLaMP 2 of the released shape (random weights; a few pieces: the point is
the start-up, not the store), then searched by text in fresh processes: once loading the checkpoint with
PyTorch (`--backend torch`), once from the model's cached ONNX export (`export onnx` without `--out`, which
search then uses by itself). Reports wall-clock seconds per process. Writes the
``startup`` section of docs/benchmarks.md.
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

from benchmarks import embedding as E  # noqa: E402
from benchmarks._report import machine, table, write_section  # noqa: E402

QUERY = "a lively jig in D major"


def cli(*args: str, env: dict[str, str]) -> float:
    """Wall-clock seconds of one ``clamp2-engine`` process."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "clamp2_engine", *args], capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"clamp2-engine {args[0]} failed: {proc.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="keep the checkpoint here")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-startup-"))
    home = Path(tempfile.mkdtemp(prefix="bench-startup-home-"))
    env = {**os.environ, "CLAMP2_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    try:
        ckpt = E.checkpoint(work)
        corpus = home / "corpus"
        corpus.mkdir()
        for f in E.corpus(3)["abc"]:
            shutil.copy(f, corpus / f.name)
        model = ["--model", str(ckpt), "--text-model", str(E.TEXT_MODEL)]
        cli("ingest", str(corpus), "-c", "bench", "--no-render", *model, env=env)
        search = ["search", QUERY, "-c", "bench"]
        rows, seconds = [], {}
        for name, extra in (
            ("PyTorch (checkpoint, `--backend torch`)", ["--backend", "torch"]),
            ("cached ONNX export", []),
        ):
            if not extra:
                t0 = time.perf_counter()
                cli("export", "onnx", *model, env=env)
                print(f"export onnx (once per model): {time.perf_counter() - t0:.0f} s", flush=True)
            seconds[name] = [cli(*search, *extra, env=env) for _ in range(args.rounds)]
            rows.append([name, " / ".join(f"{s:.2f}" for s in seconds[name]), f"{min(seconds[name]):.2f}"])
            print(rows[-1], flush=True)
        load = os.getloadavg()[0]
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    torch_best, onnx_best = (min(v) for v in seconds.values())
    text = "\n".join(
        [
            "## One-shot search start-up (`benchmarks/bench_startup.py`)",
            "",
            f'Machine: {machine()}; load average {load:.1f}. `clamp2-engine search "{QUERY}" -c bench` in a fresh '
            "process, from start to printed hits, with a CLaMP 2 of the released shape (XLM-R base text tower, "
            f"random weights), {args.rounds} runs each; the page cache is warm (the files were just written). "
            f"The cached ONNX export starts {torch_best / onnx_best:.1f}x sooner: it imports neither torch nor "
            "transformers and memory-maps the graph's weights.",
            "",
            table(["query tower from", "seconds per run", "best"], rows),
        ]
    )
    print(text)
    if not args.no_write:
        write_section("startup", text)


if __name__ == "__main__":
    main()
