r"""A tiny CLaMP 2 trained from scratch on music21's bundled corpus, end to end on a CPU.

    python examples/tiny_clamp2.py prepare data/tiny          # scores -> interleaved ABC + texts, split
    clamp2-engine train clamp2 data/tiny/train.jsonl --eval-items data/tiny/eval.jsonl --out runs/tiny \
        --hidden 64 --layers 2 --patch-length 64 --text-hidden 64 --text-layers 2 --embed-dim 64 \
        --batch-size 32 --lr 1e-3 --warmup-steps 20 --max-steps 300 --eval-every 75 --device cpu
    python examples/tiny_clamp2.py evaluate runs/tiny/best.pth data/tiny --text-model DIR

``prepare`` converts a slice of the corpus (``ingest.music21_corpus``: a few collections, a quota each) and
describes every piece by genre, composer, voices, meter and key signature (the ``demo`` model's data; see
``examples/demo_model.py``, which also trains a tokenizer for it). It writes
the seed layout (``abc/``, ``items.jsonl``) plus a seeded split (``train.jsonl`` / ``eval.jsonl``) and, for
folder-based evaluation, ``eval/text/KEY.txt`` and ``eval/abc/KEY.abc``. ``evaluate`` embeds the held-out
texts and pieces and reports text-to-music MRR / Hit@k against the chance level.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import click


def prepare(
    dst: str | os.PathLike,
    quotas: dict[str, int] | None = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, int]:
    """Convert a slice of music21's corpus into ``dst`` (seed layout + split); returns counts."""
    from clamp2_engine.ingest.music21_corpus import select, split, write_seed
    from clamp2_engine.paths import atomic_write_text

    dst = Path(dst)
    pieces = select(quotas, jobs=os.cpu_count() or 1, progress=progress)
    items = write_seed(dst, pieces)
    train, held = split(items, eval_fraction, seed)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", held)):
        atomic_write_text(dst / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    for it in held:  # folder layout for `embed` + `eval QUERY_DIR REF_DIR`
        key = Path(it["filepaths"][0]).stem
        atomic_write_text(dst / "eval" / "text" / f"{key}.txt", it["summary_en"] + "\n")
        atomic_write_text(dst / "eval" / "abc" / f"{key}.abc", (dst / it["filepaths"][0]).read_text("utf-8"))
    counts = Counter(piece.collection for piece, _abc in pieces)
    return {**counts, "pieces": len(items), "train": len(train), "eval": len(held)}


def chance_mrr(n: int) -> float:
    """Expected MRR of a random ranking of ``n`` candidates: ``H_n / n``."""
    return sum(1.0 / k for k in range(1, n + 1)) / n


def evaluate(
    model: str | os.PathLike,
    data: str | os.PathLike,
    text_model: str | os.PathLike | None = None,
    device: str | None = "cpu",
) -> dict[str, Any]:
    """Text-to-music retrieval over the held-out pieces: each eval text's own piece is the answer."""
    from clamp2_engine.evaluate import retrieval_metrics
    from clamp2_engine.pretrained import CLaMP2

    data = Path(data)
    items = [
        json.loads(line) for line in (data / "eval.jsonl").read_text("utf-8").splitlines() if line.strip()
    ]
    clamp2 = CLaMP2.from_pretrained(model, text_model, device=device)
    music = clamp2.encode_music([data / it["filepaths"][0] for it in items])
    texts = clamp2.encode_text([it["summary_en"] for it in items])
    metrics = retrieval_metrics(texts, music)
    distinct = len({it["summary_en"] for it in items})
    return {**metrics, "chance_MRR": chance_mrr(len(items)), "distinct_texts": distinct}


@click.group()
def cli() -> None:
    """A tiny CLaMP 2 on music21's corpus: prepare the data, then evaluate a trained checkpoint."""


@cli.command("prepare")
@click.argument("dst", type=click.Path(file_okay=False))
@click.option(
    "--eval-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.1,
    show_default=True,
)
@click.option("--seed", type=int, default=0, show_default=True)
def prepare_cmd(dst: str, eval_fraction: float, seed: int) -> None:
    """Convert a slice of music21's corpus into DST with texts from its metadata."""
    click.echo(json.dumps(prepare(dst, eval_fraction=eval_fraction, seed=seed)))


@cli.command("evaluate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("data", type=click.Path(exists=True, file_okay=False))
@click.option("--text-model", default=None, help="XLM-R config + tokenizer folder used in training.")
def evaluate_cmd(model: str, data: str, text_model: str | None) -> None:
    """MRR / Hit@k of the held-out texts against the held-out pieces, and the chance MRR."""
    click.echo(json.dumps(evaluate(model, data, text_model)))


if __name__ == "__main__":
    cli()
