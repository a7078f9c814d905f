"""ONNX Runtime against PyTorch on CPU, on a full-size random-weight CLaMP 2.

    python benchmarks/bench_embed_onnx.py [--limit N] [--rounds 2] [--threads T] [--no-write]

Two uses:

- ``onnx_runners(ckpt, text_model, tmp, batch_size)`` is the hook ``bench_embed.py`` calls: it exports the
  benchmark's checkpoint once (fp32, fused transformer ops) and returns the ONNX Runtime CPU runner, timed in
  the same run as the reference strategy and the PyTorch backend (worst cosine against the reference there).
- Run as a script, it times ONNX Runtime and PyTorch fp32 *interleaved*: per modality, every round runs each
  backend once (in rotating order) and the best round counts, so a shared machine's changing load does not
  favour whichever backend happened to run in a quiet minute. Writes the ``bench_embed_onnx`` section.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
Runner = Callable[[str, list[Path]], list[np.ndarray]]


def export_for_bench(
    ckpt: Path, text_model: Path, tmp: Path, threads: int | None = None, batch_size: int = 16
):
    """Export ``ckpt`` to ``tmp/onnx`` and load it on the CPU provider."""
    from clamp2_engine import CLaMP2
    from clamp2_engine.exporters.onnx import export_onnx
    from clamp2_engine.runtime.onnx_runtime import CPU, load_onnx_model

    out = tmp / "onnx"
    t0 = time.perf_counter()
    export_onnx(ckpt, out, text_model, verify=False, overwrite=True)
    print(f"exported {ckpt.name} to {out} in {time.perf_counter() - t0:.0f} s", flush=True)
    model = load_onnx_model(CLaMP2, out, device="cpu", batch_size=batch_size, threads=threads)
    assert model.encoder.runtime.music_session.get_providers() == [CPU]
    return model


def runner(model) -> Runner:
    def run(modality: str, files: list[Path]) -> list[np.ndarray]:
        encode = model.encode_music if modality == "music" else model.encode_text
        return list(encode(files, show_progress=False))

    return run


def onnx_name(batch_size: int, threads: int | None) -> str:
    import onnxruntime

    t = threads or os.environ.get("CLAMP2_ORT_THREADS") or "default"
    return (
        f"clamp2-engine onnxruntime {onnxruntime.__version__} CPU fp32 (batch {batch_size}, sorted, dynamic "
        f"padding, fused attention, {t} threads)"
    )


def onnx_runners(ckpt: Path, text_model: Path, tmp: Path, batch_size: int) -> dict[str, Runner]:
    """The hook ``bench_embed.py`` calls: ``{row name: runner}`` for ONNX Runtime on CPU."""
    return {
        onnx_name(batch_size, None): runner(export_for_bench(ckpt, text_model, tmp, batch_size=batch_size))
    }


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks._report import machine, table, write_section
    from benchmarks.bench_embed import BENCH, MODALITIES, TEXT_MODEL, cosines, full_size_checkpoint
    from clamp2_engine import CLaMP2

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="files per modality (default: all)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds per modality; the best counts")
    ap.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: cores)"
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)

    import torch

    files = {sub: sorted((BENCH / sub).glob(f"*.{sub}"))[: args.limit] for sub in MODALITIES}
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:  # 1.4 GiB checkpoint + 1.4 GiB of graphs
        ckpt = full_size_checkpoint(Path(tmp))
        ort_model = export_for_bench(ckpt, TEXT_MODEL, Path(tmp), args.threads, args.batch_size)
        torch_model = CLaMP2.from_pretrained(ckpt, TEXT_MODEL, device="cpu", batch_size=args.batch_size)
    torch_name = (
        f"clamp2-engine torch {torch.__version__} CPU fp32 (batch {args.batch_size}, SDPA, "
        f"{torch.get_num_threads()} threads)"
    )
    runners = {torch_name: runner(torch_model), onnx_name(args.batch_size, args.threads): runner(ort_model)}
    best: dict[str, dict[str, float]] = {n: {} for n in runners}
    feats: dict[str, dict[str, list[np.ndarray]]] = {n: {} for n in runners}
    loads = [os.getloadavg()[0]]
    for sub, modality in MODALITIES.items():
        for run in runners.values():
            run(modality, files[sub][:2])  # warm-up
        for r in range(args.rounds):
            order = list(runners) if r % 2 == 0 else list(runners)[::-1]
            for name in order:
                t0 = time.perf_counter()
                feats[name][sub] = runners[name](modality, files[sub])
                dt = time.perf_counter() - t0
                best[name][sub] = min(best[name].get(sub, dt), dt)
                print(f"{name[:60]:60s} {sub} round {r + 1}: {len(files[sub]) / dt:7.2f} files/s", flush=True)
        loads.append(os.getloadavg()[0])
    n_files = sum(len(v) for v in files.values())
    rows = []
    for name in runners:
        total = sum(best[name].values())
        worst = min(cosines(feats[name][s], feats[torch_name][s]) for s in MODALITIES)
        speed = sum(best[torch_name].values()) / total
        rows.append(
            [
                name,
                *(f"{len(files[s]) / best[name][s]:.2f}" for s in MODALITIES),
                f"{n_files / total:.2f}",
                f"{speed:.2f}x",
                f"{worst:.7f}",
            ]
        )
    text = "\n".join(
        [
            "## ONNX Runtime vs PyTorch on CPU (`benchmarks/bench_embed_onnx.py`)",
            "",
            f"Machine: {machine()}; 1-minute load average {min(loads):.1f}-{max(loads):.1f} during the run (shared "
            "machine). Same full-size random-weight CLaMP 2 and corpus as `bench_embed.py`; the ONNX graphs are "
            "exported once (fp32, ONNX Runtime's fused Attention / SkipLayerNormalization / BiasGelu). Timing is "
            f"interleaved: per modality, {args.rounds} rounds each running both backends (alternating order), best "
            "round reported. The ONNX row of `bench_embed.py`'s table (sequential, one pass) carries the worst "
            "cosine against the reference strategy.",
            "",
            table(
                [
                    "backend",
                    "ABC files/s",
                    "MTF files/s",
                    "text files/s",
                    "all files/s",
                    "speed vs torch",
                    "worst cosine vs torch fp32",
                ],
                rows,
            ),
        ]
    )
    print(text)
    if not args.no_write:
        write_section("bench_embed_onnx", text)


if __name__ == "__main__":
    main()
