r"""A tiny CLaMP 2 trained from scratch on music21's bundled corpus, end to end on a CPU.

    python examples/tiny_clamp2.py prepare data/tiny          # scores -> interleaved ABC + texts, split
    clamp2-engine train clamp2 data/tiny/train.jsonl --eval-items data/tiny/eval.jsonl --out runs/tiny \
        --hidden 64 --layers 2 --patch-length 64 --text-hidden 64 --text-layers 2 --embed-dim 64 \
        --batch-size 32 --lr 1e-3 --warmup-steps 20 --max-steps 300 --eval-every 75 --device cpu
    python examples/tiny_clamp2.py evaluate runs/tiny/best.pth data/tiny --text-model DIR

``prepare`` converts a slice of the corpus with ``ingest.convert`` (a few collections, a quota each) and
describes every piece by its music21 metadata: composer, collection, meter and key signature. It writes
the seed layout (``abc/``, ``items.jsonl``) plus a seeded split (``train.jsonl`` / ``eval.jsonl``) and, for
folder-based evaluation, ``eval/text/KEY.txt`` and ``eval/abc/KEY.abc``. ``evaluate`` embeds the held-out
texts and pieces and reports text-to-music MRR / Hit@k against the chance level.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import click

# collection -> how many pieces to take (in corpus order); tune books count tunes, not files
QUOTAS = {
    "bach": 250,
    "essenFolksong": 250,
    "oneills1850": 200,
    "ryansMammoth": 200,
    "trecento": 100,
    "palestrina": 40,
    "monteverdi": 30,
    "mozart": 16,
    "haydn": 9,
    "josquin": 8,
}
COMPOSERS = {
    "bach": "J.S. Bach",
    "palestrina": "Palestrina",
    "monteverdi": "Monteverdi",
    "mozart": "Mozart",
    "haydn": "Haydn",
    "josquin": "Josquin des Prez",
}  # when a piece's own metadata names none
FOLK = {"essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk"}
NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven"]


def key_signature(sharps: int | None) -> str | None:
    """``-2`` -> "two flats"; words rather than digits, so any tokenizer reads them."""
    if sharps is None or abs(sharps) >= len(NUMBERS):
        return None
    if sharps == 0:
        return "no sharps or flats"
    n = abs(sharps)
    return f"{NUMBERS[n]} {'sharp' if sharps > 0 else 'flat'}{'s' if n > 1 else ''}"


def corpus_metadata() -> dict[tuple[str, int | None], Any]:
    """music21's corpus metadata by (path relative to the corpus, tune number)."""
    from music21 import corpus

    bundle = corpus.corpora.CoreCorpus().metadataBundle
    entries = getattr(bundle, "_metadataEntries", None)  # bundle[i] copies the whole index: O(n^2) to iterate
    values = entries.values() if entries is not None else (bundle[i] for i in range(len(bundle)))
    return {(str(e.sourcePath), e.number): e.metadata for e in values}


def describe(collection: str, meta: Any) -> dict[str, Any]:
    """Metadata fields and an English sentence built from them."""
    composer = (
        getattr(meta, "composer", None)
        or COMPOSERS.get(collection)
        or ("traditional" if collection in FOLK else None)
    )
    meter = getattr(meta, "timeSignatureFirst", None)
    key = key_signature(getattr(meta, "keySignatureFirst", None))
    fields = {
        "composer": composer,
        "collection": collection,
        "meter": f"{meter} time" if meter else None,
        "key": f"key signature with {key}" if key else None,
    }
    lead = (
        f"A piece by {composer}"
        if composer and composer != "traditional"
        else ("Traditional music" if composer else "A piece")
    )
    parts = [lead, f"from the {collection} collection"]
    if meter:
        parts.append(f"in {meter} time")
    if key:
        parts.append(f"with a key signature of {key}")
    return {**{k: v for k, v in fields.items() if v}, "summary_en": ", ".join(parts) + "."}


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")


def prepare(
    dst: str | os.PathLike,
    quotas: dict[str, int] | None = None,
    eval_fraction: float = 0.1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, int]:
    """Convert a slice of music21's corpus into ``dst`` (seed layout + split); returns counts."""
    from music21 import corpus

    from clamp2_engine.batch import progress_bar
    from clamp2_engine.paths import atomic_write_text
    from ingest.convert import ConversionError, score_to_interleaved_abc

    dst = Path(dst)
    (dst / "abc").mkdir(parents=True, exist_ok=True)
    quotas = quotas or QUOTAS
    metadata = corpus_metadata()
    root = Path(corpus.getWork("bach/bwv66.6")).parents[1]
    items: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    used: set[str] = set()
    files = [
        (c, p)
        for c in quotas
        for p in sorted((root / c).rglob("*"))
        if p.is_file() and p.suffix in (".mxl", ".xml", ".abc", ".krn", ".musicxml")
    ]
    with progress_bar("converting music21's corpus", len(files), enabled=progress) as advance:
        for collection, path in files:
            advance()
            if counts[collection] >= quotas[collection]:
                continue
            rel = path.relative_to(root).as_posix()
            try:
                pieces = score_to_interleaved_abc(path)
            except (ConversionError, ValueError, OSError):
                counts["failed"] += 1
                continue
            for suffix, abc in pieces:
                if counts[collection] >= quotas[collection]:
                    break
                number = int(suffix[1:]) if suffix[1:].isdigit() else None
                meta = metadata.get((rel, number)) or metadata.get((rel, None))
                name = base = safe_name(f"{collection}_{Path(rel).stem}{suffix}")
                while name in used:  # the same stem with another extension (a.xml, a.mxl)
                    name = f"{base}_{len(used)}"
                used.add(name)
                atomic_write_text(dst / "abc" / f"{name}.abc", abc)
                items.append({**describe(collection, meta), "filepaths": [f"abc/{name}.abc"]})
                counts[collection] += 1
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[: max(1, int(len(items) * eval_fraction))])
    write = {
        "items.jsonl": items,
        "train.jsonl": [it for i, it in enumerate(items) if i not in held],
        "eval.jsonl": [it for i, it in enumerate(items) if i in held],
    }
    for name, rows in write.items():
        atomic_write_text(dst / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    for it in write["eval.jsonl"]:  # folder layout for `embed` + `eval QUERY_DIR REF_DIR`
        key = Path(it["filepaths"][0]).stem
        atomic_write_text(dst / "eval" / "text" / f"{key}.txt", it["summary_en"] + "\n")
        atomic_write_text(dst / "eval" / "abc" / f"{key}.abc", (dst / it["filepaths"][0]).read_text("utf-8"))
    return {**counts, "pieces": len(items), "train": len(items) - len(held), "eval": len(held)}


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
    from clamp2_engine.api import CLaMP2
    from clamp2_engine.evaluate import retrieval_metrics

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
