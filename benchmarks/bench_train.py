"""Training throughput (samples/s) and the end-to-end tiny CLaMP 2 example's retrieval quality.

    python benchmarks/bench_train.py                  # throughput + the music21 example (about 10 min on 2 cores)
    python benchmarks/bench_train.py --skip-example   # throughput only

Throughput: a few optimizer steps of M3 and CLaMP 2 on the bench corpus (60 pieces), the rate of the
steps after the first log window. On a GPU the base size (hidden 768, 12 layers) runs with bf16/fp16
autocast; on a CPU a small configuration. The example: ``examples/tiny_clamp2.py`` prepares a slice of
music21's corpus, a tiny CLaMP 2 trains from scratch for ``--steps``, and the held-out texts retrieve
their pieces; MRR is reported beside the chance level ``H_n / n``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import machine, table, write_section  # noqa: E402
from clamp2_engine.train.config import CLaMP2Options, LoopConfig, M3Options  # noqa: E402
from clamp2_engine.train.run import run_clamp2, run_m3  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures"
BENCH, TEXT_MODEL = FIXTURES / "bench-corpus", FIXTURES / "clamp2-parity" / "text_model"
SMALL = {"hidden_size": 128, "num_layers": 2, "patch_length": 128}
BASE = {"hidden_size": 768, "num_layers": 12, "patch_length": 512}
EXAMPLE = {
    "hidden_size": 64,
    "num_layers": 2,
    "patch_length": 64,
    "text_hidden_size": 64,
    "text_layers": 2,
    "embed_dim": 64,
}


def seed_layout(root: Path) -> Path:
    """The bench corpus as a seed JSONL (its one-line texts as ``summary_en``)."""
    (root / "abc").mkdir(parents=True, exist_ok=True)
    lines = []
    for path in sorted((BENCH / "abc").glob("*.abc")):
        (root / "abc" / path.name).write_bytes(path.read_bytes())
        text = (BENCH / "txt" / f"{path.stem}.txt").read_text(encoding="utf-8").strip()
        lines.append(json.dumps({"summary_en": text, "filepaths": [f"abc/{path.name}"]}))
    (root / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "items.jsonl"


def rate(out: Path) -> float:
    """samples/s of the last log window (the first one includes start-up)."""
    train = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"train"' in x]
    return train[-1]["samples_per_s"]


def throughput(tmp: Path, steps: int, device: str) -> list[list[object]]:
    sizes = BASE if device == "cuda" else SMALL
    batch = {"cuda": (16, 32), "cpu": (8, 16)}[device]
    rows = []
    loop = {
        "max_steps": steps,
        "warmup_steps": 1,
        "log_every": max(1, steps // 2),
        "eval_split": 0.0,
        "progress": False,
        "device": device,
    }
    run_m3(LoopConfig(out=tmp / "m3", batch_size=batch[0], **loop), M3Options(data=[BENCH / "abc"], **sizes))
    rows.append(
        ["M3", sizes["hidden_size"], sizes["num_layers"], sizes["patch_length"], batch[0], rate(tmp / "m3")]
    )
    text = (
        {}
        if device == "cuda"
        else {"text_hidden_size": sizes["hidden_size"], "text_layers": sizes["num_layers"]}
    )
    run_clamp2(
        LoopConfig(out=tmp / "clamp2", batch_size=batch[1], **loop),
        CLaMP2Options(
            items=seed_layout(tmp / "pairs"), text_model=str(TEXT_MODEL), embed_dim=768, **sizes, **text
        ),
    )
    rows.append(
        [
            "CLaMP 2",
            sizes["hidden_size"],
            sizes["num_layers"],
            sizes["patch_length"],
            batch[1],
            rate(tmp / "clamp2"),
        ]
    )
    return [[*r[:-1], f"{r[-1]:.1f}"] for r in rows]


def load_example():
    spec = importlib.util.spec_from_file_location("tiny_clamp2", REPO / "examples" / "tiny_clamp2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def example(tmp: Path, data: Path | None, steps: int) -> dict:
    tiny = load_example()
    data = data or tmp / "tiny"
    started = time.perf_counter()
    counts = tiny.prepare(data) if not (data / "eval.jsonl").exists() else {}
    prepared = time.perf_counter() - started
    out = tmp / "tiny-run"
    loop = LoopConfig(
        out=out,
        max_steps=steps,
        batch_size=32,
        lr=1e-3,
        warmup_steps=20,
        eval_every=max(1, steps // 4),
        log_every=10,
        progress=True,
        device="cpu",
    )
    summary = run_clamp2(
        loop,
        CLaMP2Options(
            items=data / "train.jsonl", eval_items=data / "eval.jsonl", text_model=str(TEXT_MODEL), **EXAMPLE
        ),
    )
    metrics = tiny.evaluate(out / "best.pth", data, TEXT_MODEL)
    return {
        "counts": counts,
        "prepare_s": round(prepared, 1),
        "train": summary,
        "metrics": metrics,
        "train_items": sum(1 for _ in open(data / "train.jsonl", encoding="utf-8")),
    }


def report(rows: list[list[object]], device: str, ex: dict | None, steps: int) -> str:
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    out = [
        "## Training (`benchmarks/bench_train.py`)",
        "",
        f"Machine: {machine()}; load average at the end {load} (a shared machine: CPU figures are noisy)",
        "",
    ]
    out.append(
        f"Throughput on {gpu} (bf16/fp16 autocast), base size:"
        if gpu
        else "Throughput on CPU (fp32), a small configuration. **GPU throughput was not measured** (no GPU "
        "was available to this run); the CUDA/AMP path is the same code."
    )
    out += ["", table(["model", "hidden", "layers", "patches", "batch", "samples/s"], rows), ""]
    if ex:
        m, t = ex["metrics"], ex["train"]
        out += [
            "End-to-end example (`examples/tiny_clamp2.py`): a tiny CLaMP 2 (music and text towers hidden 64, "
            f"2 layers, 64-d joint space, 64-patch windows) trained from scratch on CPU for {steps} steps of "
            f"batch 32 ({t['seconds'] / 60:.1f} min, {ex['train_items']} training pieces) on a slice of "
            "music21's corpus described by composer, collection, meter and key signature. The tokenizer is the "
            "parity fixture's 602-token XLM-R-style one (no Hub access here). Held-out texts retrieve their "
            f"pieces among {m['pairs']} held-out pieces ({m['distinct_texts']} distinct texts, so many "
            "queries share one text):",
            "",
            table(
                ["MRR", "chance MRR (H_n/n)", "Hit@1", "Hit@10", "pairs"],
                [
                    [
                        f"{m['MRR']:.4f}",
                        f"{m['chance_MRR']:.4f}",
                        f"{m['Hit@1']:.4f}",
                        f"{m['Hit@10']:.4f}",
                        m["pairs"],
                    ]
                ],
            ),
            "",
            f"Best evaluation loss {t['best_eval_loss']:.4f} at step {t['best_step']}. An honest small figure, "
            "not a target: the texts only say what the headers (meter, key) and style can show.",
        ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=6, help="Optimizer steps per throughput run.")
    parser.add_argument("--example-steps", type=int, default=300, help="Training steps of the tiny example.")
    parser.add_argument(
        "--data", type=Path, default=None, help="A folder `tiny_clamp2.py prepare` already wrote."
    )
    parser.add_argument("--skip-example", action="store_true")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        rows = throughput(Path(tmp), args.steps, device)
        print(table(["model", "hidden", "layers", "patches", "batch", "samples/s"], rows))
        ex = None if args.skip_example else example(Path(tmp), args.data, args.example_steps)
        if ex:
            print(json.dumps(ex, indent=2, default=str))
    write_section("bench_train", report(rows, device, ex, args.example_steps))


if __name__ == "__main__":
    main()
