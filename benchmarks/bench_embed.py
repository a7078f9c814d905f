"""Embedding throughput: clamp2-engine against the reference strategy, on a full-size random model.

    python benchmarks/bench_embed.py [--limit N] [--dtypes fp32,bf16] [--no-write]

Builds a CLaMP 2 checkpoint of the released shape (M3 768/12, XLM-R base 768/12, 250002-token vocabulary)
with random weights, embeds tests/fixtures/bench-corpus (60 ABC, 60 MTF, 60 texts) with each strategy in one
run, and reports files/s, the speed-up over the reference strategy and the worst cosine between each
strategy's pooled features and the reference strategy's. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, table, write_section  # noqa: E402
from benchmarks.reference_strategy import ReferenceExtractor  # noqa: E402
from clamp2_engine import CLaMP2  # noqa: E402
from clamp2_engine.checkpoints import save_checkpoint  # noqa: E402
from clamp2_engine.encoder import windows  # noqa: E402
from clamp2_engine.models import CLaMP2Config, CLaMP2Model  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
BENCH = FIXTURES / "bench-corpus"
TEXT_MODEL = FIXTURES / "clamp2-parity" / "text_model"
MODALITIES = {"abc": "music", "mtf": "music", "txt": "text"}

Runner = Callable[[str, list[Path]], list[np.ndarray]]


def full_size_checkpoint(folder: Path) -> Path:
    """A random-weight CLaMP 2 of the released shape, saved in the reference format."""
    torch.manual_seed(0)
    model = CLaMP2Model(CLaMP2Config())
    return save_checkpoint(folder / "clamp2-random-base.pth", model.state_dict())


def engine_runner(ckpt: Path, dtype: str, batch_size: int) -> Runner:
    model = CLaMP2.from_pretrained(ckpt, TEXT_MODEL, device="cpu", dtype=dtype, batch_size=batch_size)

    def run(modality: str, files: list[Path]) -> list[np.ndarray]:
        encode = model.encode_music if modality == "music" else model.encode_text
        return list(encode(files, show_progress=False))

    return run


def reference_runner(ckpt: Path) -> Runner:
    ref = ReferenceExtractor(ckpt, TEXT_MODEL)

    def run(modality: str, files: list[Path]) -> list[np.ndarray]:
        return [ref.music(f) if modality == "music" else ref.text(f) for f in files]

    return run


def cosines(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return min(float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b, strict=True))


def overlap_share(files: dict[str, list[Path]]) -> tuple[float, int, int]:
    """Share of music positions computed only because the last window overlaps its predecessor."""
    from clamp2_engine.encoder import read_text_file
    from clamp2_engine.patches import encode_patches

    real = computed = 0
    for sub in ("abc", "mtf"):
        for f in files.get(sub, []):
            n = len(encode_patches(read_text_file(f)))
            real += n
            computed += sum(e - s for s, e in windows(n, 512))
    return (computed - real) / max(computed, 1), real, computed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="files per modality (default: all 60)")
    ap.add_argument("--dtypes", default="fp32,bf16", help="engine precisions to measure")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--no-reference", action="store_true", help="skip the (slow) reference strategy")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime backend")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)

    files = {sub: sorted((BENCH / sub).glob(f"*.{sub}"))[: args.limit] for sub in MODALITIES}
    n_files = sum(len(v) for v in files.values())
    tmp = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        run_all(args, files, n_files, tmp)
    finally:  # the checkpoint and exports take a few GB
        shutil.rmtree(tmp, ignore_errors=True)


def run_all(args: argparse.Namespace, files: dict[str, list[Path]], n_files: int, tmp: Path) -> None:
    ckpt = full_size_checkpoint(tmp)
    print(f"checkpoint {ckpt} ({ckpt.stat().st_size / 2**20:.0f} MiB), {n_files} files", flush=True)

    runners: dict[str, Runner] = {}
    if not args.no_reference:
        runners["reference strategy (fp32, 1 file/pass, pad 512/128, one-hot, eager)"] = reference_runner(
            ckpt
        )
    for dtype in args.dtypes.split(","):
        if dtype == "bf16" and not torch.backends.mkldnn.is_available():
            continue
        runners[f"clamp2-engine torch {dtype} (batch {args.batch_size}, sorted, dynamic padding, SDPA)"] = (
            engine_runner(ckpt, dtype, args.batch_size)
        )
    if not args.no_onnx:  # the ONNX Runtime backend (exporters + onnxruntime)
        from benchmarks.bench_embed_onnx import onnx_runners

        runners.update(onnx_runners(ckpt, TEXT_MODEL, tmp, args.batch_size))

    results: dict[str, dict[str, tuple[float, list[np.ndarray]]]] = {}
    for name, run in runners.items():
        results[name] = {}
        for sub, modality in MODALITIES.items():
            run(modality, files[sub][:2])  # warm-up
            t0 = time.perf_counter()
            feats = run(modality, files[sub])
            results[name][sub] = (time.perf_counter() - t0, feats)
            print(f"{name:80s} {sub}: {len(files[sub]) / results[name][sub][0]:7.2f} files/s", flush=True)

    base_name = next(iter(results))
    base_total = sum(t for t, _ in results[base_name].values())
    rows = []
    for name, per in results.items():
        total = sum(t for t, _ in per.values())
        worst = min(cosines(per[s][1], results[base_name][s][1]) for s in MODALITIES)
        rows.append(
            [
                name,
                *(f"{len(files[s]) / per[s][0]:.2f}" for s in MODALITIES),
                f"{n_files / total:.2f}",
                f"{base_total / total:.2f}x",
                f"{worst:.6f}",
            ]
        )
    share, real, computed = overlap_share(files)
    engine_fp32 = next((n for n in results if "engine torch fp32" in n), None)
    md = [
        "## Embedding throughput (`benchmarks/bench_embed.py`)",
        "",
        f"Machine: {machine()}. Model: CLaMP 2 of the released shape (M3 768-d/12 layers, XLM-R base 768-d/12 "
        "layers, 250002-token vocabulary) with random weights; tokenizer: the parity fixture's (the XLM-R "
        f"tokenizer cannot be downloaded here). Corpus: `tests/fixtures/bench-corpus` ({n_files} files). Throughput is "
        "end to end (read, patch/tokenize, forward, pool, recombine), one run, all strategies in the same process.",
        "",
        table(
            [
                "strategy",
                "ABC files/s",
                "MTF files/s",
                "text files/s",
                "all files/s",
                f"speed-up vs {'reference' if not args.no_reference else base_name}",
                "worst cosine vs first row",
            ],
            rows,
        ),
        "",
        f"Music positions computed by the engine: {computed} for {real} real patches; {share:.1%} of the music "
        "compute is the overlapping last windows (a piece of n > 512 patches ends with the window of its last "
        "512), which the reference's features include and parity therefore requires. The rest is the real "
        "patches themselves: the engine pads nothing beyond the longest window in each length-sorted batch.",
    ]
    if engine_fp32:
        md.append("")
        md.append(
            f"Worst cosine of the engine's fp32 features against the reference strategy's: "
            f"{min(cosines(results[engine_fp32][s][1], results[base_name][s][1]) for s in MODALITIES):.7f}."
        )
    text = "\n".join(md)
    print(text)
    if not args.no_write:
        write_section("bench_embed", text)


if __name__ == "__main__":
    main()
