r"""Build the `demo` model shipped in clamp2_engine/assets/demo: a tiny CLaMP 2 trained on music21's corpus.

    python examples/demo_model.py prepare data/demo          # ~1,150 pieces -> ABC + texts, split, tokenizer
    clamp2-engine train clamp2 data/demo/train.jsonl --eval-items data/demo/eval.jsonl --out runs/demo \
        --text-model data/demo/text --hidden 128 --layers 2 --patch-length 256 --embed-dim 128 \
        --max-text-length 64 --batch-size 32 --lr 1e-3 --warmup-steps 50 --max-steps 1200 \
        --eval-every 200 --device cpu
    python examples/demo_model.py evaluate runs/demo/best.pth data/demo     # held-out MRR vs chance
    python examples/demo_model.py package runs/demo/best.pth data/demo      # -> clamp2_engine/assets/demo

``prepare`` converts a slice of music21's bundled corpus (``ingest.music21_corpus``) and describes each piece
by genre, composer, voices, meter and key signature in English, plus German, French or Spanish template
sentences; it trains a small BPE tokenizer on those texts with the ``tokenizers`` library (XLM-R's cannot be
downloaded everywhere) and writes an XLM-R-shaped ``config.json`` beside it. ``package`` keeps only the
model weights (fp16), the tokenizer, the list of demo pieces and a model card with the measured figures.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "clamp2_engine" / "assets" / "demo"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R's ids 0..3; <mask> comes last
TEXT_SIZES = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512}
DEMO_PIECES = 320  # pieces `clamp2-engine demo` ingests


def read_items(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def train_tokenizer(texts: list[str], out: Path, vocab_size: int = 3000, max_text_length: int = 64) -> int:
    """A lower-casing BPE tokenizer in XLM-R's layout (``<s> ... </s>``, pad id 1) and an XLM-R config."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2)
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_text_length,
    )
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    config = XLMRobertaConfig(
        vocab_size=len(fast),
        max_position_embeddings=max_text_length + 2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
        **TEXT_SIZES,
    )
    config.save_pretrained(out)
    (out / "model.safetensors").unlink(missing_ok=True)
    return len(fast)


def all_texts(items: list[dict[str, Any]]) -> list[str]:
    out = []
    for it in items:
        out.append(it["summary_en"])
        out.append(it["summary_nen"]["summary"])
        out.extend(str(v) for k, v in it.items() if isinstance(v, str) and k != "summary_en")
    return out


@click.group()
def cli() -> None:
    """Build the demo model: prepare, (train with the CLI), evaluate, package."""


@cli.command("prepare")
@click.argument("dst", type=click.Path(file_okay=False, path_type=Path))
@click.option("--jobs", type=int, default=os.cpu_count() or 1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def prepare_cmd(dst: Path, jobs: int, seed: int) -> None:
    """Convert the corpus slice into DST (seed layout, split, pieces.jsonl) and train the tokenizer."""
    from clamp2_engine.ingest.music21_corpus import select, split, write_seed

    pieces = select(jobs=jobs)
    items = write_seed(dst, pieces)
    train, held = split(items, 0.1, seed)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", held)):
        (dst / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    with open(dst / "pieces.jsonl", "w", encoding="utf-8") as fh:
        for piece, _abc in pieces:
            row = {
                "name": piece.name,
                "collection": piece.collection,
                "path": piece.path,
                "number": piece.number,
            }
            fh.write(json.dumps({**row, "fields": piece.fields}, ensure_ascii=False) + "\n")
    vocab = train_tokenizer(all_texts(train), dst / "text")
    click.echo(json.dumps({"pieces": len(items), "train": len(train), "eval": len(held), "vocab": vocab}))


def chance_mrr(n: int) -> float:
    """Expected MRR of a random ranking of ``n`` candidates: ``H_n / n``."""
    return sum(1.0 / k for k in range(1, n + 1)) / n


def evaluate(model: str | os.PathLike, data: Path, text_model: str | os.PathLike | None) -> dict[str, Any]:
    """Held-out text-to-music retrieval: each eval text's own piece is the answer (English and not)."""
    from clamp2_engine.evaluate import retrieval_metrics
    from clamp2_engine.pretrained import CLaMP2

    items = read_items(data / "eval.jsonl")
    clamp2 = CLaMP2.from_pretrained(model, text_model, device="cpu")
    music = clamp2.encode_music([data / it["filepaths"][0] for it in items])
    out: dict[str, Any] = {"pieces": len(items), "chance_MRR": round(chance_mrr(len(items)), 4)}
    for label, key in (("en", lambda it: it["summary_en"]), ("nen", lambda it: it["summary_nen"]["summary"])):
        m = retrieval_metrics(clamp2.encode_text([key(it) for it in items]), music)
        out[label] = {k: round(float(v), 4) if isinstance(v, float) else v for k, v in m.items()}
    out["distinct_texts"] = len({it["summary_en"] for it in items})
    return out


@cli.command("evaluate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--text-model", default=None, help="Tokenizer folder (default: DATA/text).")
def evaluate_cmd(model: str, data: Path, text_model: str | None) -> None:
    """MRR / Hit@k of the held-out texts against the held-out pieces, and the chance MRR."""
    click.echo(json.dumps(evaluate(model, data, text_model or data / "text")))


@cli.command("package")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=ASSETS, show_default=True)
def package_cmd(model: Path, data: Path, out: Path) -> None:
    """Weights (fp16, no optimizer state), tokenizer and demo pieces into OUT; prints the sha256."""
    import random

    import torch

    from clamp2_engine.checkpoints import load_checkpoint, save_checkpoint, sha256_file

    ckpt = load_checkpoint(model)
    state = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    extras = {k: ckpt[k] for k in ("max_text_length", "patch_length", "patch_size", "step") if k in ckpt}
    out.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(out / "clamp2_demo.pth", state, epoch=ckpt.get("epoch", 0), **extras)
    shutil.rmtree(out / "text", ignore_errors=True)
    shutil.copytree(data / "text", out / "text")
    pieces = read_items(data / "pieces.jsonl")
    by_collection: dict[str, list[dict]] = {}
    for p in pieces:
        by_collection.setdefault(p["collection"], []).append(p)
    rng, chosen = random.Random(0), []
    share = DEMO_PIECES / len(pieces)  # the same share of every collection
    for rows in by_collection.values():
        chosen += rng.sample(rows, max(1, round(len(rows) * share)))
    chosen.sort(key=lambda p: p["name"])
    with open(out / "pieces.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in chosen)
    metrics = evaluate(path, data, out / "text")
    sha = sha256_file(path)
    config = (
        json.loads((model.parent / "config.json").read_text("utf-8"))
        if (model.parent / "config.json").is_file()
        else {}
    )
    (out / "MODEL_CARD.md").write_text(
        model_card(sha, path.stat().st_size, metrics, ckpt, config, len(chosen), len(pieces)), "utf-8"
    )
    write_doc(metrics, sha)
    click.echo(
        json.dumps(
            {
                "checkpoint": str(path),
                "sha256": sha,
                "bytes": path.stat().st_size,
                "pieces": len(chosen),
                "metrics": metrics,
            }
        )
    )


def metrics_table(metrics: dict[str, Any]) -> str:
    rows = ["| queries | MRR | Hit@1 | Hit@10 | chance MRR |", "|---|---|---|---|---|"]
    for label, key in (("English descriptions", "en"), ("German / French / Spanish descriptions", "nen")):
        m = metrics[key]
        rows.append(
            f"| {label} | {m['MRR']:.3f} | {m['Hit@1']:.3f} | {m['Hit@10']:.3f} | {metrics['chance_MRR']:.3f} |"
        )
    return "\n".join(rows)


def model_card(
    sha: str, size: int, metrics: dict[str, Any], ckpt: dict, config: dict, pieces: int, total: int
) -> str:
    """What the demo model is, what it knows and what it does not."""
    loop = config.get("loop", {})
    return f"""# `demo`: a toy CLaMP 2 for trying clamp2-engine offline

**It is a toy.** It runs the whole engine (ingest, search, shell, evaluate) without any download,
and finds pieces by the few facts it was taught. Real music retrieval needs the released CLaMP 2 weights
(`--model clamp2`, from the Hugging Face Hub).

- **File:** `clamp2_demo.pth` ({size / 2**20:.1f} MB, fp16 weights in the reference checkpoint layout, no
  optimizer state), sha256 `{sha}`; tokenizer and XLM-R-shaped config in `text/`.
- **Shape:** music tower M3 with hidden size 128, 2 layers, 64-character patches, 256 patches per window;
  text tower XLM-R with hidden size 128, 2 layers, {ckpt["model"]["text_model.embeddings.word_embeddings.weight"].shape[0]}-token
  vocabulary; 128-d joint space; text windows of {ckpt.get("max_text_length", 64)} tokens (recorded in the checkpoint).
- **Tokenizer:** a lower-casing BPE trained with the `tokenizers` library on the training texts (XLM-R's
  250k-token tokenizer cannot be downloaded everywhere). Words it never saw are split into pieces it knows.
- **Data:** {total} pieces of music21's bundled corpus (Bach chorales, Essen folk songs,
  O'Neill's and Ryan's Mammoth fiddle tunes, Trecento songs, Palestrina, Monteverdi, Mozart and Haydn quartet
  movements, Josquin, Corelli), converted to interleaved ABC by `music.convert`; 90 % for training, 10 %
  held out. Texts come from music21's metadata and the scores themselves: genre (dance types from tune
  titles), composer, number of voices, meter and key signature, as an English sentence, the same facts in
  German, French or Spanish template sentences, and the metadata values alone (the reference's text
  dropout). No LLM summaries, no lyrics, no descriptions of mood or style.
- **Training:** `clamp2-engine train clamp2` from scratch (both towers random), {loop.get("max_steps", "?")} steps,
  batch {loop.get("batch_size", "?")}, AdamW lr {loop.get("lr", "?")}, on a 2-core CPU
  (`examples/demo_model.py` rebuilds it, data to package).
- **What it knows:** queries about those facts, in English, German, French or Spanish ("an Irish jig in
  6/8 time", "a chorale by J.S. Bach for four voices", "Madrigal von Monteverdi"). It does not know
  moods, instruments, styles or any composer, genre or language outside its data, and its music tower
  knows only what separates those classes.
- **Measured** (held-out text-to-music retrieval among {metrics["pieces"]} pieces; many share the same
  description, which caps MRR):

{metrics_table(metrics)}

`clamp2-engine demo` ingests {pieces} of these pieces (training and held-out alike) into collection `demo`.
"""


def write_doc(metrics: dict[str, Any], sha: str) -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    from benchmarks._report import machine, write_section

    write_section(
        "demo-model",
        "\n".join(
            [
                "## The `demo` model (`examples/demo_model.py package`)",
                "",
                f"Held-out text-to-music retrieval of the shipped toy model (sha256 `{sha[:12]}...`): each of the "
                f"{metrics['pieces']} held-out pieces' descriptions is a query, its own piece the answer, among those "
                f"{metrics['pieces']} pieces ({metrics['distinct_texts']} distinct English descriptions: pieces that share "
                "one cannot all rank first). Chance is the expected MRR of a random ranking.",
                "",
                metrics_table(metrics),
                "",
                f"Machine: {machine()}.",
            ]
        ),
    )


if __name__ == "__main__":
    cli()
