"""M3 patches and windows, against hand-checked cases from the reference's rules."""

from __future__ import annotations

import numpy as np
import pytest

from clamp2_engine.encoder import combine_pooled, combine_raw, plan_batches, windows
from clamp2_engine.music.patches import (
    encode_patches,
    ids_to_patch,
    is_mtf,
    patch_to_ids,
    split_bars,
    split_patches,
)
from clamp2_engine.music.text import dedupe_lines, join_for_tokenizer


@pytest.mark.parametrize(
    ("line", "bars"),
    [
        ("[V:1]cB|[V:2]E2|\n", ["[V:1]cB|", "[V:2]E2|"]),
        ("|:abc:|def||\n", ["|:abc:|", "def||"]),
        ("abc\n", []),
        ("|\n", []),
        ("::a|b|]\n", ["::a|", "b|]"]),
    ],
)
def test_split_bars(line, bars):
    assert split_bars(line) == bars


def test_abc_patches_fields_and_bars():
    abc = "%%score 1\nL:1/8\nK:C\n[V:1]cB|[V:2]E2|\n"
    assert split_patches(abc) == ["%%score 1\n", "L:1/8\n", "K:C\n", "[V:1]cB|", "[V:2]E2|\n"]


def test_mtf_patches_merge_same_type_while_they_fit():
    mtf = "ticks_per_beat 480\nnote_on 0 0 60 80\nnote_on 10 0 60 0\nset_tempo 500000 0"
    assert split_patches(mtf) == [
        "ticks_per_beat 480\n",
        "note_on 0 0 60 80\t10 0 60 0\n",
        "set_tempo 500000 0",
    ]
    long = "ticks_per_beat 480\n" + "\n".join(f"note_on {i} 0 60 80" for i in range(10))
    patches = split_patches(long)
    assert all(len(p) <= 62 for p in patches[1:])
    assert is_mtf(long)
    assert not is_mtf("X:1\nK:C\n")


def test_ids_and_special_patches():
    ids = encode_patches("K:C\n|abc|\n")
    assert ids.shape == (4, 64)
    assert ids.dtype == np.int64
    assert ids[0].tolist() == [1] * 64
    assert ids[-1].tolist() == [1] + [2] * 63
    assert ids[1][:6].tolist() == [1, ord("K"), ord(":"), ord("C"), ord("\n"), 2]
    assert ids_to_patch(ids[2]) == "|abc|\n" or ids_to_patch(ids[2]).startswith("|abc|")
    assert len(patch_to_ids("x" * 100)) == 64


def test_unicode_is_transliterated_and_empty_input_refused():
    assert encode_patches("T:Für Elise\nK:C\n").max() < 128
    with pytest.raises(ValueError):
        encode_patches("")


@pytest.mark.parametrize(
    ("length", "size", "spans"),
    [
        (5, 4, [(0, 4), (1, 5)]),
        (8, 4, [(0, 4), (4, 8)]),
        (3, 4, [(0, 3)]),
        (9, 4, [(0, 4), (4, 8), (5, 9)]),
    ],
)
def test_windows_replace_last_with_final_span(length, size, spans):
    assert windows(length, size) == spans


def test_recombination_weights_and_raw_cut():
    vecs = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(combine_pooled(vecs, 5, 4), [4 / 5, 1 / 5], rtol=1e-6)
    np.testing.assert_allclose(combine_pooled(vecs, 8, 4), [0.5, 0.5], rtol=1e-6)
    parts = [np.arange(4)[:, None], np.arange(1, 5)[:, None]]
    assert combine_raw(parts, 5, 4).ravel().tolist() == [0, 1, 2, 3, 4]
    assert combine_raw(parts, 8, 4).ravel().tolist() == [0, 1, 2, 3, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("lengths", "budget", "cap", "sizes"),
    [
        ([512, 512, 512], 1024, 64, [2, 1]),  # two full windows a pass
        ([512, 100, 90, 10], 1024, 64, [2, 2]),  # a pass pads to its first (longest) window
        ([600, 300], 256, 64, [1, 1]),  # a window over the budget runs alone
        ([10] * 10, 1 << 20, 4, [4, 4, 2]),  # the window cap
        ([0, 0], 8, 64, [2]),  # empty windows still count one position each
        ([], 8, 64, []),
    ],
)
def test_token_budget_batches(lengths, budget, cap, sizes):
    plan = plan_batches(lengths, budget, cap)
    assert [p.stop - p.start for p in plan] == sizes
    assert [i for p in plan for i in range(p.start, p.stop)] == list(range(len(lengths)))
    for p in plan:
        assert p.stop - p.start == 1 or (p.stop - p.start) * max(1, lengths[p.start]) <= budget


def test_text_lines_deduplicated_in_first_occurrence_order():
    assert dedupe_lines("b\na\n\nb\nc") == ["b", "a", "c"]
    assert join_for_tokenizer("b\na\nb", "</s>") == "b</s>a"
    with pytest.raises(ValueError):
        join_for_tokenizer("\n\n", "</s>")
