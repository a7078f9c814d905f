"""Embedding speed on CPU: the reference strategy and the engine in the same run, per modality.

    python benchmarks/bench_embed.py [--limit N] [--rounds 2] [--work DIR] [--no-process] [--no-write]
    python benchmarks/bench_embed.py --sweep [--limit N]     # the token budget per dtype

A CLaMP 2 of the released shape with random weights embeds tests/fixtures/bench-corpus (60 ABC, 60 MTF,
60 texts). In-process strategies are timed interleaved (``benchmarks/embedding.py``): the reference
strategy; the engine on PyTorch fp32 and bf16; on ONNX Runtime fp32 and int8. Whole processes (start-up,
model load and writing the features included) are timed too: the reference strategy as a script against
``clamp2-engine embed --pooled`` at fp32 and bf16. Each figure is given as a speed-up over the reference
and as a share of the compute floor (the speed-up from the work the engine saves, at equal cost per
position). Writes the ``bench_embed`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import embedding as E  # noqa: E402
from benchmarks._report import machine, table, write_section  # noqa: E402

SUBS = list(E.MODALITIES)
REFERENCE = "reference strategy (fp32, 1 file a pass, padded, one-hot, eager)"


def strategies(ckpt: Path, work: Path, onnx: bool) -> dict[str, E.Runner]:
    import torch

    exports = {p: E.export(ckpt, work, p) for p in ("fp32", "int8")} if onnx else {}  # before models load
    runners = {REFERENCE: E.reference(ckpt)}
    runners["engine torch fp32 (token budget 1024)"] = E.torch_engine(ckpt, "fp32")
    if torch.backends.mkldnn.is_available():
        runners["engine torch bf16 (token budget 1024)"] = E.torch_engine(ckpt, "bf16")
    if onnx:
        runners["engine onnxruntime fp32"] = E.onnx_engine(exports["fp32"])
        runners["engine onnxruntime int8 (dynamic quantization)"] = E.onnx_engine(exports["int8"])
    return runners


def in_process(args, files, ckpt: Path, work: Path) -> str:
    runners = strategies(ckpt, work, not args.no_onnx)
    timings, loads = E.interleaved(runners, files, args.rounds)
    floor = E.floors(files)
    ref = timings[REFERENCE]
    n_all = sum(len(v) for v in files.values())
    floor_all = ref.total() / sum(ref.best(s) / floor[s] for s in SUBS)
    rows = []
    for name, t in timings.items():
        speed = {s: ref.best(s) / t.best(s) for s in SUBS}
        total = ref.total() / t.total()
        worst = min(E.worst_cosine(t.feats[s], ref.feats[s]) for s in SUBS)
        rows.append(
            [
                name,
                *(
                    f"{len(files[s]) / t.best(s):.2f} ({speed[s]:.2f}x, {speed[s] / floor[s]:.0%})"
                    for s in SUBS
                ),
                f"{n_all / t.total():.2f}",
                f"{total:.2f}x ({total / floor_all:.0%})",
                f"{t.spread():.2f}",
                f"{worst:.7f}",
            ]
        )
    header = [
        "strategy",
        *(f"{s.upper()} files/s (vs reference, of floor)" for s in SUBS),
        "all files/s",
        "all: vs reference (of floor)",
        "round spread",
        "worst cosine vs reference",
    ]
    floor_line = ", ".join(f"{s.upper()} {floor[s]:.2f}x" for s in SUBS)
    return "\n".join(
        [
            f"In process, interleaved: {args.rounds} rounds per modality, every strategy once a round in rotating "
            f"order, best round counted; 1-minute load average {min(loads):.1f}-{max(loads):.1f}. Compute floor "
            f"at fp32 parity (reference positions / engine positions): {floor_line}, all {floor_all:.2f}x. "
            "Round spread: slowest whole-corpus round over the fastest (1.00 is steady).",
            "",
            table(header, rows),
        ]
    )


def processes(args, ckpt: Path, work: Path) -> str:
    src = work / "corpus"
    if not src.exists():
        shutil.copytree(E.BENCH, src)
    commands = {
        "reference strategy as a process (`benchmarks/reference_strategy.py`)": E.reference_process(
            ckpt, src, work / "out-ref"
        ),
        "`clamp2-engine embed --pooled` (the default, `--dtype auto`)": E.engine_process(
            ckpt, src, work / "out-auto"
        ),
        "`clamp2-engine embed --pooled --dtype fp32`": E.engine_process(
            ckpt, src, work / "out-fp32", "--dtype", "fp32"
        ),
        "`clamp2-engine embed --pooled --dtype bf16`": E.engine_process(
            ckpt, src, work / "out-bf16", "--dtype", "bf16"
        ),
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name, command in commands.items():
            seconds[name].append(E.whole_process(command))
            print(f"{name[:64]:64s} process round {r + 1}: {seconds[name][-1]:.1f} s", flush=True)
        loads.append(os.getloadavg()[0])
    ref = min(seconds[next(iter(commands))])
    rows = [
        [name, " / ".join(f"{s:.1f}" for s in secs), f"{ref / min(secs):.2f}x"]
        for name, secs in seconds.items()
    ]
    return "\n".join(
        [
            f"Whole processes over the same 180 files (start-up, model load, reading and writing included), "
            f"{args.rounds} rounds in turn; 1-minute load average {min(loads):.1f}-{max(loads):.1f}:",
            "",
            table(["process", "seconds per round", "speed-up vs reference (best rounds)"], rows),
        ]
    )


def sweep(args, files, ckpt: Path) -> None:
    """Files/s per modality at several token budgets, fp32 and bf16 (how the defaults were chosen)."""
    budgets = [512, 1024, 2048, 4096]
    runners = {
        f"torch {d} budget {b}": E.torch_engine(ckpt, d, max_batch_tokens=b)
        for d in ("fp32", "bf16")
        for b in budgets
    }
    timings, loads = E.interleaved(runners, files, args.rounds)
    rows = [[n, *(f"{len(files[s]) / t.best(s):.2f}" for s in SUBS)] for n, t in timings.items()]
    print(table(["strategy", *(f"{s} files/s" for s in SUBS)], rows))
    print(f"load {min(loads):.1f}-{max(loads):.1f}")


def profile(ckpt: Path) -> str:
    """Where a 512-patch music pass spends its time, per operator, at fp32 and bf16 (torch.profiler)."""
    import torch
    from torch.profiler import profile as torch_profile

    from clamp2_engine import CLaMP2

    rows, totals = {}, {}
    for dtype in ("fp32", "bf16"):
        model = CLaMP2.from_pretrained(ckpt, E.TEXT_MODEL, device="cpu", dtype=dtype, towers=("music",))
        run = model.encoder.runtime.music
        patches = torch.randint(0, 128, (1, 512, 64)).numpy()
        masks = torch.ones(1, 512, dtype=torch.long).numpy()
        run(patches, masks, pooled=True)
        with torch_profile() as prof:
            run(patches, masks, pooled=True)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        totals[dtype] = sum(e.self_cpu_time_total for e in events) / 1e3
        for e in events[:5]:
            rows.setdefault(e.key, {})[dtype] = e.self_cpu_time_total / 1e3
    lines = [
        [op, *(f"{t.get(d, 0):.0f} ({t.get(d, 0) / totals[d]:.0%})" for d in totals)]
        for op, t in rows.items()
    ]
    lines.append(["all operators", *(f"{totals[d]:.0f}" for d in totals)])
    return "\n".join(
        [
            "Where one 512-patch music pass spends its time (torch.profiler, self CPU milliseconds and share):",
            "",
            table(["operator", *totals], lines),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="files per modality (default: all 60)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep the checkpoint and exports here")
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--no-process", action="store_true", help="skip the whole-process timings")
    ap.add_argument("--sweep", action="store_true", help="time token budgets instead")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-operator profile")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    files = E.corpus(args.limit)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        ckpt = E.checkpoint(work)
        if args.sweep:
            return sweep(args, files, ckpt)
        parts = [in_process(args, files, ckpt, work)]
        if not args.no_process:
            parts.append(processes(args, ckpt, work))
        if not args.no_profile:
            parts.append(profile(ckpt))
    finally:
        if args.work is None:  # the checkpoint and exports take a few GB
            shutil.rmtree(work, ignore_errors=True)
    text = "\n\n".join(
        [
            "## Embedding speed on CPU (`benchmarks/bench_embed.py`)",
            f"Machine: {machine()}. Model: CLaMP 2 of the released shape (M3 768-d/12 layers, XLM-R base "
            "768-d/12 layers, 250002-token vocabulary) with random weights; the parity fixture's tokenizer. "
            f"Corpus: `tests/fixtures/bench-corpus` ({sum(len(v) for v in files.values())} files). Throughput is "
            "end to end (read, patch/tokenize, forward, pool, recombine).",
            *parts,
        ]
    )
    print(text)
    if not args.no_write:
        write_section("bench_embed", text)


if __name__ == "__main__":
    main()
