"""M3 patches and windows, against hand-checked cases from the reference's rules."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_patches import reference_patches
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
    assert ids.dtype == np.uint8  # below 128: an eighth of int64's bytes; a runtime widens them
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
        ([512, 100, 90, 10], 1024, 64, [1, 2, 1]),  # a pass pads to its first window: no short one joins it
        ([512, 400, 360, 300], 4096, 64, [3, 1]),  # 300 < 0.7 * 512 starts a pass of its own
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


def test_batches_run_at_most_a_bounded_share_of_padding():
    """Executed positions stay within 1 / MIN_FILL of the real ones (a batch pads to its longest), and
    min_fill=0 gives the budget-only plan."""
    from clamp2_engine.encoder import MIN_FILL

    rng = np.random.default_rng(0)
    lengths = sorted([512] * 63 + rng.integers(1, 512, 400).tolist(), reverse=True)
    for p in plan_batches(lengths, 1 << 16, 1024):
        run, real = (p.stop - p.start) * lengths[p.start], sum(lengths[p])
        assert run <= real / MIN_FILL
    assert [p.stop - p.start for p in plan_batches([512, 10, 10], 1 << 16, 64, min_fill=0)] == [3]


def test_text_lines_deduplicated_in_first_occurrence_order():
    assert dedupe_lines("b\na\n\nb\nc") == ["b", "a", "c"]
    assert join_for_tokenizer("b\na\nb", "</s>") == "b</s>a"
    with pytest.raises(ValueError):
        join_for_tokenizer("\n\n", "</s>")


def _rowwise(text: str, patch_size: int) -> np.ndarray:
    """The reference's way: one Python list per patch, then one array."""
    from clamp2_engine.music.patches import special_patches

    bos, eos = special_patches(patch_size)
    return np.asarray([bos, *(patch_to_ids(p, patch_size) for p in split_patches(text, patch_size)), eos])


@pytest.mark.parametrize("patch_size", [8, 64, 128])
def test_the_byte_buffer_patcher_gives_the_reference_ids_on_every_fixture(parity_dir, bench_dir, patch_size):
    from clamp2_engine.music.text import read_text_file

    files = [
        p
        for d in (parity_dir / "inputs", bench_dir)
        for p in sorted(d.rglob("*"))
        if p.suffix in (".abc", ".mtf")
    ]
    assert len(files) > 100
    for path in files:
        text = read_text_file(path)
        assert np.array_equal(encode_patches(text, patch_size), _rowwise(text, patch_size)), path


@pytest.mark.parametrize("short", [0, 1000])  # rows built by scatter, by padding strings
@pytest.mark.parametrize("n", [0, 1, 61, 62, 63, 64, 200])
def test_the_byte_buffer_patcher_at_the_edges_of_a_row(n, short, monkeypatch):
    """A patch that fills its row: EOS where it fits, cut where it does not (as the reference)."""
    import clamp2_engine.music.patches as patching

    monkeypatch.setattr(patching, "SHORT_PATCHES", short)
    patches = ["a" * n, "b|", "c" * (n // 2)]
    rows = np.asarray([patch_to_ids(p) for p in patches])
    assert np.array_equal(patching.patches_to_ids(patches), rows)
    bos, eos = patching.special_patches()
    assert np.array_equal(patching.patches_to_ids(patches, specials=True), np.asarray([bos, *rows, eos]))
    with pytest.raises(ValueError, match="alphabet"):
        patching.patches_to_ids(["caf\u00e9|"])


def test_whole_body_bar_split_equals_the_reference_on_random_abc():
    """The one-split path for regular bodies and the line-by-line path for the rest give the reference's
    patches on every text: fields, leading and doubled barlines, text after the last one, blank lines."""
    import random

    tokens = ["a", "b2 ", "|", ":", "[", "]", "\n", "|:", "::", ":|", "[|", "||", "|]", "[V:1]", "T:x", "%%s"]
    tokens += ["\n[V:2]c|", "|\n", "%1\n", "\r\n", "\t", "\u00fc", "\n\n"]
    rng = random.Random(7)
    for _ in range(20000):
        text = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 30)))
        if text.startswith("ticks_per_beat"):
            continue
        assert split_patches(text) == reference_patches(text), repr(text)


def test_patch_split_equals_the_reference_on_every_fixture(parity_dir, bench_dir):
    from clamp2_engine.music.text import read_text_file

    for d in (parity_dir / "inputs", bench_dir):
        for path in sorted(d.rglob("*")):
            if path.suffix in (".abc", ".mtf"):
                text = read_text_file(path)
                assert split_patches(text) == reference_patches(text), path


def test_length_capped_batches_give_the_same_features(parity_model, monkeypatch):
    """Batches cut by length (MIN_FILL) give the features of the budget-only plan."""
    import clamp2_engine.encoder as enc

    rng = np.random.default_rng(1)
    pieces = [rng.integers(4, 128, (n, 64)) for n in (1300, 40, 700, 3, 520, 90)]
    capped = parity_model.encoder.features("music", pieces, max_batch_tokens=1 << 15)
    plain = enc.plan_batches
    monkeypatch.setattr(enc, "plan_batches", lambda *a, **k: plain(*a, **{**k, "min_fill": 0.0}))
    budget_only = parity_model.encoder.features("music", pieces, max_batch_tokens=1 << 15)
    for a, b in zip(capped, budget_only, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_batches_built_ahead_give_the_same_features_in_order(parity_model, monkeypatch):
    """On an accelerator the next batch is built while the current one computes; forced on here (a CPU
    builds between passes), the features are the same."""
    from clamp2_engine.encoder import prefetched

    assert list(prefetched(lambda x: x * 2, [1, 2, 3], True)) == [(1, 2), (2, 4), (3, 6)]
    assert list(prefetched(lambda x: x * 2, [], True)) == []
    rng = np.random.default_rng(2)
    pieces = [rng.integers(4, 128, (n, 64)) for n in (700, 5, 90, 300)]
    assert parity_model.encoder.prefetch is False  # a CPU
    plain = parity_model.encoder.features("music", pieces, max_batch_tokens=512)
    monkeypatch.setattr(parity_model.encoder, "prefetch", True)
    ahead = parity_model.encoder.features("music", pieces, max_batch_tokens=512)
    for a, b in zip(plain, ahead, strict=True):
        np.testing.assert_array_equal(a, b)
