"""Training data and objectives: windows, the M3 masking mix, instrument names, items, text dropout, loss."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from clamp2_engine.cli import main
from clamp2_engine.music.patches import EOS_ID, MASK_ID, encode_patches
from clamp2_engine.train.build import freeze_unused, m3_config, text_config
from clamp2_engine.train.data import (
    M3Dataset,
    collate_m3,
    crop,
    mask_patches,
    remove_instrument_info,
    sample_rng,
)
from clamp2_engine.train.items import PairCollate, PairDataset, choose_text, load_pairs, parse_item, pick_file
from clamp2_engine.train.objectives import contrastive_loss

ABC = (
    'X:1\nL:1/8\nM:4/4\nK:G\nV:1 treble nm="Violin" snm="Vln."\nV:2 bass snm="Vc."\n[V:1]GABc|[V:2]G,A,B,C|\n'
)
MTF = "ticks_per_beat 480\nprogram_change 0 0 40\nnote_on 0 0 60 80\nprogram_change 0 1 73"


class Forced(random.Random):
    """A random source whose weighted choice is fixed (to test each branch of the masking mix)."""

    def __init__(self, pick: str, seed: int = 0):
        super().__init__(seed)
        self.pick = pick

    def choices(self, population, weights=None, *, cum_weights=None, k=1):
        return [self.pick]


@pytest.mark.parametrize("train", [True, False])
def test_crop_keeps_short_and_cuts_long_to_a_contiguous_window(train):
    seq = np.arange(100)
    assert len(crop(seq[:10], 20, random.Random(0), train)) == 10
    starts = set()
    for seed in range(60):
        out = crop(seq, 20, random.Random(seed), train)
        assert len(out) == 20
        assert np.all(np.diff(out) == 1)
        starts.add(int(out[0]))
    if train:
        assert {0, 80} <= starts
        assert len(starts) > 3
    else:
        assert starts == {0}


def test_mask_mix_selects_ceil_ratio_and_applies_each_branch():
    ids = encode_patches(ABC.replace("L:1/8\n", ""))
    n = len(ids)
    inputs, sel = mask_patches(ids, 0.45, Forced("mask"), train=True)
    assert sel.sum() == math.ceil(0.45 * n)
    assert np.all(inputs[sel == 1] == MASK_ID)
    assert np.array_equal(inputs[sel == 0], ids[sel == 0])
    inputs, sel = mask_patches(ids, 0.45, Forced("shuffle", seed=3), train=True)
    for i in np.flatnonzero(sel):
        assert inputs[i, 0] == ids[i, 0]
        assert sorted(inputs[i]) == sorted(ids[i])
        eos = np.flatnonzero(ids[i] == EOS_ID)
        if len(eos) == 1:  # characters move only between bos and eos
            assert np.array_equal(inputs[i, eos[0] :], ids[i, eos[0] :])
    inputs, sel = mask_patches(ids, 0.45, Forced("original"), train=True)
    assert np.array_equal(inputs, ids)
    inputs, sel = mask_patches(ids, 0.45, Forced("mask"), train=False)  # evaluation leaves them
    assert np.array_equal(inputs, ids)
    assert sel.sum() == math.ceil(0.45 * n)


def test_mask_mix_proportions_over_many_samples():
    ids = encode_patches(ABC)
    kinds = {"mask": 0, "other": 0}
    for seed in range(400):
        inputs, sel = mask_patches(ids, 0.45, random.Random(seed), train=True)
        kinds["mask" if np.all(inputs[sel == 1] == MASK_ID) else "other"] += 1
    assert 0.7 < kinds["mask"] / 400 < 0.9


def test_remove_instrument_info_abc_and_mtf():
    out = remove_instrument_info(ABC)
    assert "V:1 treble\n" in out
    assert "V:2 bass\n" in out
    assert "nm=" not in out
    assert "[V:1]GABc|" in out
    mtf = remove_instrument_info(MTF)
    assert mtf.splitlines()[1] == "program_change 0 0 0"
    assert mtf.splitlines()[3] == "program_change 0 1 0"
    assert mtf.splitlines()[2] == "note_on 0 0 60 80"


def write_items(tmp_path, items, name="items.jsonl"):
    path = tmp_path / name
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in items) + "\n", encoding="utf-8"
    )
    return path


@pytest.fixture()
def music_dir(tmp_path):
    (tmp_path / "abc").mkdir()
    (tmp_path / "mtf").mkdir()
    for i in range(4):
        (tmp_path / "abc" / f"p{i}.abc").write_text(ABC.replace("GABc", "GABc" * (i + 1)), encoding="utf-8")
        (tmp_path / "mtf" / f"p{i}.mtf").write_text(MTF, encoding="utf-8")
    return tmp_path


def test_items_are_validated_per_line(music_dir):
    lines = [
        {
            "title": "ok",
            "summary_en": ["one", "two"],
            "summary_nen": {"language": "German", "summary": "eins"},
            "filepaths": ["abc/p0.abc", "abc/../mtf/p0.mtf"],
        },
        {"title": "escape", "summary_en": "x", "filepaths": ["abc/p1.abc", "../outside.abc"]},
        {"title": "absolute", "summary_en": "x", "filepaths": [str(music_dir / "abc" / "p1.abc")]},
        {"title": "missing", "summary_en": "x", "filepaths": ["nope.abc"]},
        {"summary_en": "", "filepaths": ["abc/p1.abc"], "year": 1900},
        "not json",
        ["a", "list"],
        {"title": "no files", "summary_en": "x"},
    ]
    path = write_items(music_dir, lines)
    items, errors = load_pairs(path)
    assert [it.metadata for it in items] == [("ok",)]
    assert len(items[0].files) == 2
    assert items[0].summaries_en == ("one", "two")
    assert items[0].summaries_nen == ("eins",)
    reasons = dict(errors)
    assert len(errors) == 7
    assert "escapes" in reasons[f"{path}:2"]
    assert "must be relative" in reasons[f"{path}:3"]
    assert "none of its filepaths" in reasons[f"{path}:4"]
    assert "no text" in reasons[f"{path}:5"]
    assert "invalid JSON" in reasons[f"{path}:6"]
    assert "JSON object" in reasons[f"{path}:7"]


def test_choose_text_reference_mix(music_dir):
    item = parse_item(
        {
            "composer": "Bach",
            "genre": ["Chorale", "Sacred\nVocal", "Bach"],
            "summary_en": "An English text.",
            "summary_nen": [{"language": "French", "summary": "Un texte."}],
            "filepaths": ["abc/p0.abc"],
        },
        music_dir,
        "x:1",
    )
    assert item.metadata == ("Bach", "Chorale", "Sacred", "Vocal")
    assert (
        choose_text(item, random.Random(0), train=False, text_dropout=True, sep="</s>") == "An English text."
    )
    assert (
        choose_text(item, random.Random(0), train=True, text_dropout=False, sep="</s>") == "An English text."
    )
    seen = {"meta": 0, "en": 0, "nen": 0}
    for seed in range(400):
        text = choose_text(item, random.Random(seed), train=True, text_dropout=True, sep="</s>")
        if text == "An English text.":
            seen["en"] += 1
        elif text == "Un texte.":
            seen["nen"] += 1
        else:
            parts = text.split("</s>")
            assert parts
            assert set(parts) <= set(item.metadata)
            assert len(set(parts)) == len(parts)
            seen["meta"] += 1
    assert 150 < seen["meta"] < 250
    assert 60 < seen["en"] < 140
    assert 60 < seen["nen"] < 140
    bare = parse_item({"composer": "Bach", "filepaths": ["abc/p0.abc"]}, music_dir, "x:2")
    assert choose_text(bare, random.Random(1), train=True, text_dropout=True, sep="|") in {"Bach"}
    assert choose_text(bare, random.Random(1), train=False, text_dropout=True, sep="|") == "Bach"


def test_pick_file_eval_prefers_abc(music_dir):
    item = parse_item({"t": "x", "filepaths": ["mtf/p0.mtf", "abc/p0.abc"]}, music_dir, "x:1")
    assert pick_file(item, random.Random(0), train=False).suffix == ".abc"
    assert {pick_file(item, random.Random(s), train=True).suffix for s in range(20)} == {".abc", ".mtf"}


def test_samples_depend_only_on_seed_epoch_and_index(music_dir, parity_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(parity_dir / "text_model")
    lines = [
        {
            "title": f"piece {i}",
            "composer": "Anon",
            "summary_en": f"text {i}",
            "filepaths": [f"abc/p{i}.abc", f"mtf/p{i}.mtf"],
        }
        for i in range(4)
    ]
    items, _ = load_pairs(write_items(music_dir, lines))
    ds = PairDataset(items, tok, train=True, patch_size=64, patch_length=8, max_text_length=6)
    a, b = ds[2], ds[2]
    assert np.array_equal(a["text"], b["text"])
    assert np.array_equal(a["music"], b["music"])
    assert len(a["text"]) <= 6
    assert len(a["music"]) <= 8
    batch = PairCollate(tok.pad_token_id)([ds[i] for i in range(4)])
    assert batch["text"].shape[0] == 4
    assert batch["music"].shape[2] == 64
    assert torch.all(batch["text"][batch["text_masks"] == 0] == tok.pad_token_id)
    assert sample_rng(0, 1, 2).random() == sample_rng(0, 1, 2).random() != sample_rng(0, 2, 2).random()


def test_bad_files_are_replaced_and_reported(music_dir):
    (music_dir / "abc" / "bad.abc").write_bytes(b"")
    files = sorted((music_dir / "abc").glob("*.abc"))
    ds = M3Dataset(files, train=True, patch_size=64, patch_length=16, seed=1)
    bad = [i for i, f in enumerate(files) if f.name == "bad.abc"][0]
    sample = ds[bad]
    assert sample["errors"]
    assert "bad.abc" in sample["errors"][0][0]
    assert "empty" in sample["errors"][0][1]
    batch = collate_m3([ds[i] for i in range(len(files))])
    assert batch["patches"].shape[:2] == batch["masks"].shape == batch["selection"].shape
    assert batch["size"] == len(files)
    assert len(batch["errors"]) == 1


def test_contrastive_loss_is_symmetric_infonce_with_scale_one():
    torch.manual_seed(0)
    text, music = torch.randn(5, 8), torch.randn(5, 8)
    loss, _ = contrastive_loss(text, music)
    logits = text @ music.t()
    labels = torch.arange(5)
    want = (
        torch.nn.functional.cross_entropy(logits, labels)
        + torch.nn.functional.cross_entropy(logits.t(), labels)
    ) / 2
    assert torch.allclose(loss, want)
    _, acc = contrastive_loss(10 * torch.eye(5, 8), 10 * torch.eye(5, 8))
    assert acc.item() == 1.0


def test_sizes_follow_the_checkpoint_loaders_rules(parity_dir):
    from transformers import AutoConfig

    hf = AutoConfig.from_pretrained(parity_dir / "text_model")
    assert text_config(hf, {}).num_heads == hf.num_attention_heads
    small = text_config(hf, {"hidden_size": 64, "num_hidden_layers": 1})
    assert (small.num_heads, small.intermediate_size, small.num_layers) == (1, 256, 1)
    with pytest.raises(ValueError, match="heads"):
        text_config(hf, {"hidden_size": 130 + 64})
    with pytest.raises(ValueError, match="disagree"):
        m3_config(256, None, None, None, base=m3_config(128, 2, None, None))
    from clamp2_engine.models import M3Model

    frozen = freeze_unused(M3Model(m3_config(64, 1, None, 16, 1)))
    assert any(".pooler." in n for n in frozen)
    assert "encoder.base.embeddings.word_embeddings.weight" in frozen


def test_cli_rejects_conflicting_and_missing_runs(tmp_path, music_dir):
    path = write_items(music_dir, [{"t": "x", "filepaths": ["abc/p0.abc"]}])
    result = CliRunner().invoke(
        main, ["train", "clamp2", str(path), "--out", str(tmp_path / "r"), "--init", "a", "--m3", "b"]
    )
    assert result.exit_code == 2
    assert "exclude" in result.output
    result = CliRunner().invoke(
        main,
        ["train", "m3", str(music_dir / "abc"), "--out", str(tmp_path / "r"), "--resume", "--device", "cpu"],
    )
    assert result.exit_code == 1
    assert "nothing to resume" in result.output
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "latest.pth").write_bytes(b"x")
    result = CliRunner().invoke(
        main, ["train", "m3", str(music_dir / "abc"), "--out", str(tmp_path / "r"), "--device", "cpu"]
    )
    assert result.exit_code == 1
    assert "already holds a run" in result.output
