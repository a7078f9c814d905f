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
# dense tensor-core peaks (FLOP/s) by device name and precision, from the vendors' data sheets; fp32 is the
# plain (non-TF32) rate PyTorch's default matmul precision runs at
PEAKS = {
    "H200": {"bf16": 989.5e12, "fp16": 989.5e12, "fp32": 66.9e12},
    "H100": {"bf16": 989.5e12, "fp16": 989.5e12, "fp32": 66.9e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},
}
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


def tower_shapes(ckpt: Path) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(hidden, layers, feed-forward)`` of the checkpoint's music and text towers."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = state.get("model", state)

    def shape(prefix: str) -> tuple[int, int, int]:
        layers = {
            k.split(".layer.")[1].split(".")[0] for k in state if k.startswith(prefix) and ".layer." in k
        }
        ffn_key = next(k for k in state if k.startswith(prefix) and k.endswith("intermediate.dense.weight"))
        ffn, hidden = state[ffn_key].shape
        return int(hidden), len(layers), int(ffn)

    return shape("music_model."), shape("text_model.")


def peak_memory(device: str):
    """``(reset, read)``: peak GPU memory of the PyTorch work between them, in GiB (``None`` on CPU)."""
    import torch

    if not device.startswith("cuda"):
        return (lambda: None), (lambda: None)
    return torch.cuda.reset_peak_memory_stats, (lambda: torch.cuda.max_memory_allocated() / 2**30)


def peak_flops(device: str, strategy: str) -> float | None:
    """The device's dense peak for the strategy's precision (``None``: not known, e.g. a CPU)."""
    import torch

    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    precision = next((p for p in ("bf16", "fp16", "fp32") if p in strategy), "fp32")
    return next((peaks[precision] for key, peaks in PEAKS.items() if key in name), None)


def flop_columns(flops: dict[str, float], seconds: dict[str, float], peak: float | None) -> list[str]:
    """Achieved TFLOP/s and MFU per modality ("ABC / MTF / TXT")."""
    achieved = [flops[s] / seconds[s] for s in SUBS]
    mfu = " / ".join(f"{a / peak:.1%}" for a in achieved) if peak else "n/a (no known peak)"
    return [" / ".join(f"{a / 1e12:.2f}" for a in achieved), mfu]


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
        flops = E.model_flops(files, *tower_shapes(ckpt))
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
                *flop_columns(flops, {s: t.best(s) for s in SUBS}, peak_flops(args.device, name)),
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
            table(
                [*header, "TFLOP/s (ABC / MTF / TXT)", "MFU (ABC / MTF / TXT)", "peak GPU memory GiB"]
                + ["worst cosine vs reference"],
                rows,
            ),
            "",
            "TFLOP/s: the useful forward FLOPs of each modality's files (every window's real positions "
            "through the encoder layers; no padding, gathers or pooling: `benchmarks/embedding.py` "
            "`model_flops`) over the best time; MFU: that over the device's dense peak for the precision "
            f"({', '.join(PEAKS)}; fp32 without TF32).",
        ]
    )
    print(text)
    if not args.no_write and not args.quick:
        write_section("bench_gpu", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
