"""--max-text-length: the reference's MAX_TEXT_LENGTH is settable everywhere, and our checkpoints record it.

The expected features come from an independent transcription of the reference text extractor (segments of
T tokens, the last one replaced by the last T tokens, masked mean + projection per segment, weighted mean
with weights [T, ..., remainder]) run on a plain ``transformers`` XLM-R built from the checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from parity_helpers import MIN_COSINE, cosine

from clamp2_engine.checkpoints import load_checkpoint
from clamp2_engine.cli import main
from clamp2_engine.pretrained import CLaMP2


def reference_text_feature(ckpt: Path, text_dir: Path, text: str, max_len: int, sizes: dict | None = None):
    """The reference extractor's pooled text feature ``[D]`` with MAX_TEXT_LENGTH = ``max_len``."""
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    tokenizer = AutoTokenizer.from_pretrained(text_dir)
    config = XLMRobertaConfig.from_pretrained(text_dir, **(sizes or {}))
    state = load_checkpoint(ckpt)["model"]
    model = XLMRobertaModel(config, add_pooling_layer=False).eval()
    model.load_state_dict(
        {
            k[len("text_model.") :]: v.float()
            for k, v in state.items()
            if k.startswith("text_model.") and "pooler" not in k
        }
    )
    proj = torch.nn.Linear(*state["text_proj.weight"].shape[::-1])
    proj.load_state_dict(
        {"weight": state["text_proj.weight"].float(), "bias": state["text_proj.bias"].float()}
    )
    lines = list(dict.fromkeys(line for line in text.split("\n") if line))
    ids = tokenizer(tokenizer.sep_token.join(lines), return_tensors="pt")["input_ids"].squeeze(0)
    segments = [ids[i : i + max_len] for i in range(0, len(ids), max_len)]
    segments[-1] = ids[-max_len:]
    feats = []
    with torch.no_grad():
        for seg in segments:
            mask = torch.cat([torch.ones(len(seg)), torch.zeros(max_len - len(seg))]).unsqueeze(0)
            padded = torch.cat([seg, torch.full((max_len - len(seg),), tokenizer.pad_token_id)]).unsqueeze(0)
            hidden = model(input_ids=padded, attention_mask=mask).last_hidden_state
            pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
            feats.append(proj(pooled))
    full, remain = divmod(len(ids), max_len)
    weights = torch.tensor([max_len] * full + ([remain] if remain else []), dtype=torch.float32)
    feats = torch.cat(feats, 0)
    return ((feats * weights.unsqueeze(-1)).sum(0) / weights.sum()).numpy(), len(ids)


def embed(src: Path, out: Path, ckpt: Path, text_dir: Path, *flags: str):
    """`clamp2-engine embed SRC OUT --pooled` with this checkpoint and tokenizer."""
    args = ["embed", str(src), str(out), "--model", str(ckpt), "--text-model", str(text_dir), "--pooled"]
    return CliRunner().invoke(main, [*args, *flags])


@pytest.fixture(scope="module")
def long_text(parity_dir) -> Path:
    return parity_dir / "inputs" / "txt" / "long.txt"


def test_embed_with_max_text_length_32_matches_the_reference(parity_dir, long_text, tmp_path):
    ckpt, text_dir = parity_dir / "checkpoints" / "clamp2.pth", parity_dir / "text_model"
    want32, n_tokens = reference_text_feature(ckpt, text_dir, long_text.read_text("utf-8"), 32)
    want128, _ = reference_text_feature(ckpt, text_dir, long_text.read_text("utf-8"), 128)
    assert n_tokens > 64  # several windows of 32 and a remainder: the windowing is really exercised
    assert cosine(want32, want128) < 0.9999  # the setting changes the feature
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "long.txt").write_bytes(long_text.read_bytes())
    result = embed(tmp_path / "in", tmp_path / "out", ckpt, text_dir, "--max-text-length", "32", "-q")
    assert result.exit_code == 0, result.output
    got = np.load(tmp_path / "out" / "long.npy")
    assert got.shape == (1, want32.shape[0])
    assert cosine(got, want32) >= MIN_COSINE
    api = CLaMP2.from_pretrained(ckpt, text_dir, max_text_length=32)
    assert api.identity.max_text_length == 32
    assert cosine(api.encode_text(long_text), want32) >= MIN_COSINE


def test_a_too_long_window_is_one_clear_line(parity_dir, long_text, tmp_path):
    ckpt, text_dir = parity_dir / "checkpoints" / "clamp2.pth", parity_dir / "text_model"
    result = embed(long_text, tmp_path / "out", ckpt, text_dir, "--max-text-length", "600")
    assert result.exit_code == 1
    assert "does not fit the text tower's 514 position embeddings (at most 512)" in result.output
    assert "Traceback" not in result.output


def test_a_checkpoint_trained_with_max_text_length_16_needs_no_flag(parity_dir, long_text, tmp_path):
    from tiny_train import tiny_clamp2, tiny_loop

    from clamp2_engine.train.run import run_clamp2

    root = tmp_path / "pairs"
    (root / "abc").mkdir(parents=True)
    abc = parity_dir / "inputs" / "abc"
    lines = []
    for i, path in enumerate(sorted(abc.glob("*.abc"))):
        (root / "abc" / path.name).write_bytes(path.read_bytes())
        lines.append(
            json.dumps({"summary_en": f"piece number {i} {path.stem}", "filepaths": [f"abc/{path.name}"]})
        )
    (root / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    loop = tiny_loop(tmp_path / "run", max_steps=2, batch_size=3, warmup_steps=1, eval_split=0.0)
    opts = tiny_clamp2(root / "items.jsonl", parity_dir, text_hidden_size=64, max_text_length=16)
    run_clamp2(loop, opts)
    ckpt = tmp_path / "run" / "latest.pth"
    saved = load_checkpoint(ckpt)
    assert (saved["max_text_length"], saved["patch_length"], saved["patch_size"]) == (16, 16, 64)
    sizes = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 256}
    want, _ = reference_text_feature(ckpt, parity_dir / "text_model", long_text.read_text("utf-8"), 16, sizes)
    model = CLaMP2.from_pretrained(ckpt, parity_dir / "text_model")  # no max_text_length: the recorded 16
    assert model.identity.max_text_length == 16
    assert cosine(model.encode_text(long_text), want) >= MIN_COSINE
    result = embed(long_text, tmp_path / "out", ckpt, parity_dir / "text_model", "-q")
    assert result.exit_code == 0, result.output
    assert cosine(np.load(tmp_path / "out" / "long.npy"), want) >= MIN_COSINE


def test_a_collection_records_its_text_window_and_search_reuses_it(
    parity_dir, long_text, tmp_path, monkeypatch
):
    """Ingested with --max-text-length 32: the record says 32, and a search (no flag) of an item's own long
    summary finds its text vector at score 1 — the same windows on both sides."""
    monkeypatch.setenv("CLAMP2_HOME", str(tmp_path / "home"))
    seed = tmp_path / "seed"
    (seed / "abc").mkdir(parents=True)
    long = " ".join(long_text.read_text("utf-8").split())
    items = []
    for i, path in enumerate(sorted((parity_dir / "inputs" / "abc").glob("*.abc"))[:3]):
        (seed / "abc" / path.name).write_bytes(path.read_bytes())
        items.append({"summary_en": f"{long} ({i})", "filepaths": [f"abc/{path.name}"]})
    (seed / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    args = [
        "--model",
        str(parity_dir / "checkpoints" / "clamp2.pth"),
        "--text-model",
        str(parity_dir / "text_model"),
    ]
    res = CliRunner().invoke(
        main, ["ingest", str(seed), "-c", "short", "--max-text-length", "32", "-q", *args]
    )
    assert res.exit_code == 0, res.output
    info = CliRunner().invoke(main, ["collections", "info", "short", "--json"])
    assert json.loads(info.stdout)["model"]["max_text_length"] == 32
    res = CliRunner().invoke(
        main,
        [
            "search",
            items[1]["summary_en"],
            "-c",
            "short",
            "--modality",
            "text",
            "-k",
            "3",
            "--json",
            "--mode",
            "semantic",
        ],
    )
    assert res.exit_code == 0, res.output
    hits = [json.loads(line) for line in res.stdout.splitlines()]
    [hit] = [h for h in hits if h["payload"]["source"] == items[1]["filepaths"][0]]
    assert hit["score"] == pytest.approx(1.0, abs=1e-5)
