"""End-to-end CPU training with tiny models on a slice of music21's corpus converted by ``music.convert``:
M3's loss falls, CLaMP 2 learns in-batch retrieval, checkpoints load in ``embed``, resume is exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tiny_train import tiny_clamp2, tiny_loop

from clamp2_engine.checkpoints import load_checkpoint
from clamp2_engine.cli import main
from clamp2_engine.train.run import run_clamp2

REFERENCE_KEYS = {"model", "optimizer", "lr_sched", "epoch", "best_epoch", "min_eval_loss"}
WORDS = [
    "amber river",
    "bright morning",
    "cold winter",
    "dancing flame",
    "evening bell",
    "falling leaves",
    "golden field",
    "hidden garden",
    "ivory tower",
    "jolly sailor",
    "kind shepherd",
    "lonely mountain",
    "merry wedding",
    "night watch",
    "open sea",
    "quiet prayer",
]


@pytest.fixture(scope="module")
def chorales(tmp_path_factory) -> Path:
    """16 Bach chorales from music21's corpus as interleaved ABC, with a JSONL pairing each with a phrase."""
    from music21 import corpus

    from clamp2_engine.music.convert import score_to_interleaved_abc

    root = tmp_path_factory.mktemp("chorales")
    (root / "abc").mkdir()
    lines = []
    for path, words in zip(sorted(corpus.getComposer("bach"))[:16], WORDS, strict=True):
        [(_suffix, abc)] = score_to_interleaved_abc(path)
        name = path.name.split(".mxl")[0].replace(".", "_")
        (root / "abc" / f"{name}.abc").write_text(abc, encoding="utf-8")
        lines.append(
            json.dumps(
                {
                    "title": words,
                    "composer": "J.S. Bach",
                    "summary_en": words,
                    "filepaths": [f"abc/{name}.abc"],
                }
            )
        )
    (root / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def events(run: Path, kind: str) -> list[dict]:
    return [
        e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if e["event"] == kind
    ]


def clamp2_args(parity_dir: Path) -> list[str]:
    sizes = "--hidden 64 --layers 1 --patch-length 32 --text-hidden 64 --text-layers 1 --embed-dim 64"
    return ["--text-model", str(parity_dir / "text_model"), *sizes.split()]


@pytest.fixture(scope="module")
def m3_run(chorales, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("m3") / "run"
    options = (
        "--hidden 32 --layers 1 --decoder-layers 1 --patch-length 24 --batch-size 4 --lr 3e-3 "
        "--warmup-steps 1 --max-steps 30 --log-every 1 --eval-split 0.25 --device cpu --json"
    ).split()
    result = CliRunner().invoke(main, ["train", "m3", str(chorales / "abc"), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["steps"] == 30
    assert summary["best"]
    return out


@pytest.fixture(scope="module")
def clamp2_run(chorales, parity_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clamp2") / "run"
    items = str(chorales / "items.jsonl")
    options = (
        "--batch-size 8 --lr 2e-3 --warmup-steps 1 --max-steps 40 --eval-every 10 --log-every 5 --dropout 0 "
        "--no-text-dropout --device cpu --json"
    ).split()
    result = CliRunner().invoke(
        main,
        [
            "train",
            "clamp2",
            items,
            "--eval-items",
            items,
            "--out",
            str(out),
            *clamp2_args(parity_dir),
            *options,
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_m3_loss_falls(m3_run):
    losses = [e["loss"] for e in events(m3_run, "train")]
    assert len(losses) == 30
    assert all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < 0.85 * np.mean(losses[:6])
    evals = events(m3_run, "eval")
    assert evals
    assert evals[-1]["loss"] < evals[0]["loss"] + 1e-6
    config = json.loads((m3_run / "config.json").read_text())
    assert config["eval_items"] == 4
    assert config["train_items"] == 12


@pytest.mark.slow
def test_clamp2_learns_in_batch_retrieval(clamp2_run):
    evals = events(clamp2_run, "eval")
    assert [e["step"] for e in evals] == [10, 20, 30, 40]
    chance = 1 / 8
    assert max(e["acc"] for e in evals) >= 3 * chance
    assert evals[-1]["loss"] < np.log(8) - 0.3


@pytest.mark.slow
def test_checkpoints_have_the_reference_layout_and_load_in_embed(
    m3_run, clamp2_run, chorales, parity_dir, tmp_path
):
    from clamp2_engine.models import CLaMP2Model, M3Model
    from clamp2_engine.models.factory import load_text_assets

    for run in (m3_run, clamp2_run):
        for name in ("best.pth", "latest.pth"):
            ckpt = load_checkpoint(run / name)
            assert REFERENCE_KEYS <= set(ckpt)
    m3 = load_checkpoint(m3_run / "best.pth")
    from clamp2_engine.models.factory import infer_clamp2_config, infer_m3_config

    assert set(m3["model"]) == set(M3Model(infer_m3_config(m3["model"])).state_dict())  # strict load works
    c2 = load_checkpoint(clamp2_run / "best.pth")
    hf, _ = load_text_assets(parity_dir / "text_model")
    assert set(c2["model"]) == set(CLaMP2Model(infer_clamp2_config(c2["model"], hf)).state_dict())
    assert c2["step"] == c2["best_step"]
    assert c2["best_epoch"] == c2["epoch"]

    dst = tmp_path / "features"
    result = CliRunner().invoke(
        main,
        [
            "embed",
            str(chorales / "abc"),
            str(dst / "clamp2"),
            "--pooled",
            "--model",
            str(clamp2_run / "best.pth"),
            "--text-model",
            str(parity_dir / "text_model"),
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    feats = [np.load(p) for p in sorted((dst / "clamp2").glob("*.npy"))]
    assert len(feats) == 16
    assert all(f.shape == (1, 64) and np.isfinite(f).all() for f in feats)
    result = CliRunner().invoke(
        main,
        [
            "embed",
            str(chorales / "abc"),
            str(dst / "m3"),
            "--model",
            str(m3_run / "latest.pth"),
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    raw = np.load(next((dst / "m3").glob("*.npy")))
    assert raw.ndim == 3
    assert raw.shape[2] == 32
    assert np.isfinite(raw).all()


def _run(out: Path, items: Path, parity_dir: Path, steps: int, resume: bool = False) -> dict:
    loop = tiny_loop(
        out,
        max_steps=steps,
        batch_size=4,
        lr=2e-3,
        warmup_steps=2,
        log_every=1,
        eval_split=0.25,
        dropout=0.0,
        resume=resume,
    )
    return run_clamp2(loop, tiny_clamp2(items, parity_dir))


@pytest.mark.slow
def test_resume_continues_exactly(chorales, parity_dir, tmp_path):
    items = chorales / "items.jsonl"  # 12 training items, batch 4: 3 steps per epoch
    straight = _run(tmp_path / "a", items, parity_dir, 5)
    _run(tmp_path / "b", items, parity_dir, 2)  # stops mid-epoch
    first = load_checkpoint(tmp_path / "b" / "latest.pth")
    assert (first["step"], first["epoch"], first["batches_in_epoch"]) == (2, 0, 2)
    resumed = _run(tmp_path / "b", items, parity_dir, 5, resume=True)
    assert straight["steps"] == resumed["steps"] == 5
    assert resumed["steps_this_run"] == 3
    a, b = load_checkpoint(tmp_path / "a" / "latest.pth"), load_checkpoint(tmp_path / "b" / "latest.pth")
    assert a["lr_sched"]["last_epoch"] == b["lr_sched"]["last_epoch"] == 5
    assert {int(s["step"]) for s in b["optimizer"]["state"].values()} == {5}
    for key, value in a["model"].items():
        assert torch.allclose(value, b["model"][key], atol=1e-6), key
    starts = events(tmp_path / "b", "start")
    assert [s["step"] for s in starts] == [0, 2]
    assert [e["step"] for e in events(tmp_path / "b", "train")] == [1, 2, 3, 4, 5]
    losses_a = [e["loss"] for e in events(tmp_path / "a", "train")]
    losses_b = [e["loss"] for e in events(tmp_path / "b", "train")]
    assert np.allclose(losses_a, losses_b, rtol=1e-5)


@pytest.mark.slow
def test_init_and_m3_weights_start_from_reference_checkpoints(chorales, parity_dir, tmp_path):
    """--init (whole model) and --m3 (music tower) load the reference-format fixture checkpoints."""
    ckpts, items = parity_dir / "checkpoints", str(chorales / "items.jsonl")
    common = [
        "--batch-size",
        "4",
        "--max-steps",
        "1",
        "--lr",
        "1e-12",
        "--weight-decay",
        "0",
        "--warmup-steps",
        "0",
        "--eval-split",
        "0",
        "--device",
        "cpu",
        "--quiet",
    ]
    text = ["--text-model", str(parity_dir / "text_model")]
    runs = {
        "clamp2": ["train", "clamp2", items, "--init", str(ckpts / "clamp2.pth"), *text, *common],
        "m3-tower": [
            "train",
            "clamp2",
            items,
            "--m3",
            str(ckpts / "m3.pth"),
            *text,
            "--text-hidden",
            "64",
            "--text-layers",
            "1",
            "--embed-dim",
            "64",
            *common,
        ],
        "m3": ["train", "m3", str(chorales / "abc"), "--init", str(ckpts / "m3.pth"), *common],
    }
    for name, args in runs.items():
        result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, (name, result.output)
    ref_c2, ref_m3 = (
        load_checkpoint(ckpts / "clamp2.pth")["model"],
        load_checkpoint(ckpts / "m3.pth")["model"],
    )
    got = load_checkpoint(tmp_path / "clamp2" / "latest.pth")["model"]
    assert set(got) == set(ref_c2)
    assert torch.allclose(
        got["text_model.embeddings.word_embeddings.weight"],
        ref_c2["text_model.embeddings.word_embeddings.weight"],
        atol=1e-6,
    )
    tower = load_checkpoint(tmp_path / "m3-tower" / "latest.pth")["model"]
    assert torch.allclose(
        tower["music_model.patch_embedding.weight"], ref_m3["encoder.patch_embedding.weight"], atol=1e-6
    )
    m3 = load_checkpoint(tmp_path / "m3" / "latest.pth")["model"]
    assert set(m3) == set(ref_m3)
    result = CliRunner().invoke(main, [*runs["m3"], "--hidden", "64", "--out", str(tmp_path / "clash")])
    assert result.exit_code == 1
    assert "disagree" in result.output
