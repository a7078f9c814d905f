"""Embedding speed on one GPU: the reference strategy against the engine, in one short run (< 5 minutes).

    python benchmarks/bench_gpu.py [--device cuda] [--limit N] [--rounds 2] [--work DIR] [--no-write]
    python benchmarks/bench_gpu.py --device cpu --quick --no-write    # a smoke run (what the tests run)

On the bench corpus with a CLaMP 2 of the released shape (random weights): the reference extractor's
strategy on the GPU (fp32, one file a pass), the engine on PyTorch at fp32, bf16 and fp16 (token-budget
batches), and on ONNX Runtime's CUDA provider with an fp16 export. Reports files/s per modality, the
speed-up over the reference, peak GPU memory (PyTorch strategies) and the worst cosine against the
reference. ``--quick``: a 2-layer model and 3 files per modality. Writes the ``bench_gpu`` section of
docs/benchmarks.md (not with ``--quick``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import embedding as E  # noqa: E402
from benchmarks._report import machine, table, write_section  # noqa: E402

SUBS = list(E.MODALITIES)
REFERENCE = "reference strategy (fp32, 1 file a pass)"
TARGET = 30.0  # the engine's best strategy against the reference on the same GPU


def strategies(ckpt: Path, work: Path, device: str, onnx: bool) -> dict[str, E.Runner]:
    precision = "fp16" if device.startswith("cuda") else "fp32"
    exported = E.export(ckpt, work, precision) if onnx else None  # before the models load
    runners = {REFERENCE: E.reference(ckpt, device)}
    dtypes = ["fp32", "bf16", "fp16"] if device.startswith("cuda") else ["fp32", "bf16"]
    for dtype in dtypes:
        runners[f"engine torch {dtype}"] = E.torch_engine(ckpt, dtype, device)
    if exported is not None:
        name = f"engine onnxruntime {'CUDA' if precision == 'fp16' else 'CPU'} {precision}"
        runners[name] = E.onnx_engine(exported, device)
    return runners


def peak_memory(device: str):
    """``(reset, read)``: peak GPU memory of the PyTorch work between them, in GiB (``None`` on CPU)."""
    import torch

    if not device.startswith("cuda"):
        return (lambda: None), (lambda: None)
    return torch.cuda.reset_peak_memory_stats, (lambda: torch.cuda.max_memory_allocated() / 2**30)


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="a 2-layer model, 3 files per modality")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep the checkpoint and exports here")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu --quick for a smoke run", file=sys.stderr)
        return 2
    files = E.corpus(3 if args.quick and args.limit is None else args.limit)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    try:
        ckpt = E.checkpoint(work, small=args.quick)
        runners = strategies(ckpt, work, args.device, not args.no_onnx)
        reset, read = peak_memory(args.device)
        memory = {}
        for name, run in runners.items():  # one pass each for the peak memory (and the warm-up)
            reset()
            for sub, modality in E.MODALITIES.items():
                run(modality, files[sub])
            memory[name] = read() if "onnxruntime" not in name else None
        timings, loads = E.interleaved(runners, files, 1 if args.quick else args.rounds, sync)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    ref = timings[REFERENCE]
    n_all = sum(len(v) for v in files.values())
    rows, best = [], 0.0
    for name, t in timings.items():
        speed = ref.total() / t.total()
        best = max(best, speed) if name != REFERENCE else best
        worst = min(E.worst_cosine(t.feats[s], ref.feats[s]) for s in SUBS)
        rows.append(
            [
                name,
                *(f"{len(files[s]) / t.best(s):.1f}" for s in SUBS),
                f"{n_all / t.total():.1f}",
                f"{speed:.1f}x",
                f"{memory[name]:.2f}" if memory[name] is not None else "n/a",
                f"{worst:.6f}",
            ]
        )
    header = ["strategy", *(f"{s.upper()} files/s" for s in SUBS), "all files/s", "vs reference"]
    text = "\n".join(
        [
            "## Embedding speed on one GPU (`benchmarks/bench_gpu.py`)",
            "",
            f"Machine: {machine()}; device {args.device}; load average {min(loads):.1f}-{max(loads):.1f}. "
            f"Model: CLaMP 2 of the {'small smoke-test' if args.quick else 'released'} shape, random weights. "
            f"Corpus: {n_all} files of `tests/fixtures/bench-corpus`. Best strategy: {best:.1f}x the reference "
            f"(target {TARGET:.0f}x).",
            "",
            table([*header, "peak GPU memory GiB", "worst cosine vs reference"], rows),
        ]
    )
    print(text)
    if not args.no_write and not args.quick:
        write_section("bench_gpu", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
