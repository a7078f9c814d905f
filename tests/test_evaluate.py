"""Retrieval metrics, CLaMP 2 score and collection evaluation (clamp2_engine.evaluate, `eval`, `score`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import save_feature

from clamp2_engine.cli import main
from clamp2_engine.evaluate import (
    FeatureError,
    clamp2_score,
    evaluate_collection,
    evaluate_folders,
    feature_key,
    item_text,
    load_features,
    load_vector,
    metrics_from_ranks,
    read_jsonl,
    retrieval_metrics,
    retrieval_ranks,
    round_metrics,
)


def reference_metrics(query: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The reference's loop (semantic_search_metrics.py), over paired rows, for comparison."""
    mrr = h1 = h10 = h100 = 0
    refs = torch.tensor(reference)
    for idx in range(len(query)):
        sims = torch.cosine_similarity(torch.tensor(query[idx]).unsqueeze(0), refs)
        order = sorted(enumerate(sims.tolist()), key=lambda x: (x[1], x[0] == idx), reverse=True)
        ranks = [x[0] for x in order]
        mrr += 1 / (ranks.index(idx) + 1)
        h100 += idx in ranks[:100]
        h10 += idx in ranks[:10]
        h1 += idx in ranks[:1]
    n = len(query)
    return {"MRR": mrr / n, "Hit@1": h1 / n, "Hit@10": h10 / n, "Hit@100": h100 / n}


def write_folder(root: Path, arrays: dict[str, np.ndarray]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / name, arr)
    return root


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# --- parity with the reference fixture ----------------------------------------------------------------


def test_fixture_metrics_match_reference(parity_dir):
    d = parity_dir / "metrics"
    expected = json.loads((d / "expected.json").read_text())
    result = evaluate_folders(d / "query", d / "reference")
    got = round_metrics(result.metrics, 4)
    assert {k: got[k] for k in ("MRR", "Hit@1", "Hit@10", "Hit@100")} == {
        k: expected[k] for k in ("MRR", "Hit@1", "Hit@10", "Hit@100")
    }
    assert got["pairs"] == 300


def test_cli_eval_and_score_on_fixture(parity_dir):
    d = parity_dir / "metrics"
    expected = json.loads((d / "expected.json").read_text())
    res = run("eval", str(d / "query"), str(d / "reference"), "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in ("MRR", "Hit@1", "Hit@10", "Hit@100"):
        assert out[key] == expected[key]
    assert out["pairs"] == 300
    assert out["errors"] == []
    res = run("score", str(d / "reference"), str(d / "query"), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["clamp2_score"] == expected["clamp2_score"]
    res = run("eval", str(d / "query"), str(d / "reference"))
    assert res.exit_code == 0
    assert "0.7476" in res.stdout


# --- metrics semantics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_equals_reference_loop(seed):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((150, 24)).astype(np.float32)
    query = (ref + rng.standard_normal(ref.shape) * 2.5).astype(np.float32)
    ref[10] = ref[20]  # an exact tie between two references
    want = reference_metrics(query, ref)
    got = retrieval_metrics(query, ref)
    assert got["pairs"] == 150
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_tie_modes():
    ref = np.array([[1, 0], [1, 0], [0, 1], [2, 0]], np.float32)  # rows 0, 1 and 3 point the same way
    query = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], np.float32)
    assert retrieval_ranks(query, ref, "reference").ranks.tolist() == [1, 1, 1, 1]
    assert retrieval_ranks(query, ref, "pessimistic").ranks.tolist() == [3, 3, 1, 3]
    with pytest.raises(ValueError, match="ties"):
        retrieval_ranks(query, ref, "optimistic")  # type: ignore[arg-type]


def test_hit_at_k_is_rank_at_most_k():
    m = metrics_from_ranks([1, 10, 11, 100, 101, float("inf")])
    assert m["Hit@1"] == pytest.approx(1 / 6)
    assert m["Hit@10"] == pytest.approx(2 / 6)
    assert m["Hit@100"] == pytest.approx(4 / 6)
    assert m["MRR"] == pytest.approx((1 + 1 / 10 + 1 / 11 + 1 / 100 + 1 / 101) / 6)
    assert m["pairs"] == 6


def test_blocks_give_identical_ranks():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((257, 16)).astype(np.float32)
    query = ref + rng.standard_normal(ref.shape).astype(np.float32)
    whole = retrieval_ranks(query, ref, block=10_000)
    for block in (1, 7, 64):
        part = retrieval_ranks(query, ref, block=block)
        assert np.array_equal(part.ranks, whole.ranks)
        assert np.array_equal(part.top_index, whole.top_index)


def test_zero_vector_and_shape_mismatch():
    ref = np.array([[1, 0], [0, 1]], np.float32)
    query = np.array([[0, 0], [0, 1]], np.float32)  # a zero query: similarity 0 to everything, as torch
    assert retrieval_ranks(query, ref).ranks.tolist() == [1, 1]
    with pytest.raises(ValueError, match="paired"):
        retrieval_ranks(query[:1], ref)


# --- folders: keys, pairing, bad files -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [("item0001.npy", "item0001"), ("piece.abc.npy", "piece"), ("sub/dir/a.b.c.npy", "sub/dir/a")],
)
def test_feature_key(tmp_path, name, key):
    assert feature_key(tmp_path, tmp_path / name) == key


def test_pairing_by_key_with_unmatched_and_nested(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((4, 8)).astype(np.float32)
    # the same vectors under the names each side gives them; the fourth is unmatched on both sides
    sides = {
        "q": ["a.txt.npy", "b.txt.npy", "s/c.npy", "only_q.npy"],
        "r": ["a.abc.npy", "b.abc.npy", "s/c.abc.npy", "x.npy"],
    }
    q, r = (
        write_folder(tmp_path / side, {n: vecs[None, i] for i, n in enumerate(names)})
        for side, names in sides.items()
    )
    result = evaluate_folders(q, r)
    assert result.keys == ["a", "b", "s/c"]
    assert result.metrics["MRR"] == 1.0
    assert result.metrics["pairs"] == 3
    assert (result.unmatched_query, result.unmatched_reference) == (1, 1)
    records = list(result.rank_records())
    assert records[0]["key"] == "a"
    assert records[0]["rank"] == 1
    assert records[0]["top"] == "a"


def test_raw_features_are_mean_pooled(tmp_path):
    raw = np.arange(24, dtype=np.float32).reshape(1, 3, 8)
    np.save(tmp_path / "raw.npy", raw)
    vec, pooled = load_vector(tmp_path / "raw.npy")
    assert pooled
    assert np.allclose(vec, raw[0].mean(axis=0))
    np.save(tmp_path / "pooled.npy", raw[:, 0])
    vec, pooled = load_vector(tmp_path / "pooled.npy")
    assert not pooled
    assert np.array_equal(vec, raw[0, 0])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (np.zeros((2, 3, 8), np.float32), "expected \\[H\\]"),
        (np.zeros((1, 1, 1, 8), np.float32), "expected \\[H\\]"),
        (np.zeros((1, 8), np.int64), "floating-point"),
        (np.full((1, 8), np.nan, np.float32), "NaN"),
        (np.zeros((1, 0, 8), np.float32), "empty"),
        (b"not a numpy file", "unreadable"),
    ],
)
def test_bad_feature_file_is_a_clear_error(tmp_path, content, reason):
    with pytest.raises(FeatureError, match=reason):
        load_vector(save_feature(tmp_path / "bad.npy", content))


def test_bad_files_are_skipped_per_file(tmp_path):
    good = np.ones((1, 8), np.float32)
    folder = write_folder(
        tmp_path / "f", {"a.npy": good, "b.npy": good * 2, "wrong.npy": np.ones((1, 4), np.float32)}
    )
    (folder / "broken.npy").write_bytes(b"garbage")
    np.save(folder / "a.mtf.npy", good)  # duplicate key "a"
    fs = load_features(folder)
    assert fs.keys == ["a", "b"]
    assert fs.matrix.shape == (2, 8)
    reasons = dict(fs.errors)
    assert "duplicate key 'a'" in reasons[str(folder / "a.npy")]
    assert "unreadable" in reasons[str(folder / "broken.npy")]
    assert "hidden size 4" in reasons[str(folder / "wrong.npy")]


def test_cli_eval_reports_skipped_files_and_writes_ranks(tmp_path):
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((5, 8)).astype(np.float32)
    q = write_folder(tmp_path / "q", {f"k{i}.npy": vecs[None, i] for i in range(5)})
    r = write_folder(tmp_path / "r", {f"k{i}.npy": vecs[None, i] for i in range(5)})
    (q / "k9.npy").write_text("oops")
    ranks = tmp_path / "out" / "ranks.jsonl"
    res = run("eval", str(q), str(r), "--json", "--ranks", str(ranks), "--ties", "pessimistic")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["MRR"] == 1.0
    assert out["pairs"] == 5
    assert out["ties"] == "pessimistic"
    assert out["errors"][0]["source"].endswith("k9.npy")
    assert "unreadable" in out["errors"][0]["reason"]
    assert "skipped" in res.stderr
    lines = [json.loads(x) for x in ranks.read_text().splitlines()]
    assert [x["key"] for x in lines] == [f"k{i}" for i in range(5)]
    assert all(x["rank"] == 1 for x in lines)


def test_cli_eval_errors(tmp_path):
    q = write_folder(tmp_path / "q", {"a.npy": np.ones((1, 8), np.float32)})
    r = write_folder(tmp_path / "r", {"b.npy": np.ones((1, 8), np.float32)})
    res = run("eval", str(q), str(r))
    assert res.exit_code == 1
    assert "no common keys" in res.output
    r2 = write_folder(tmp_path / "r2", {"a.npy": np.ones((1, 4), np.float32)})
    res = run("eval", str(q), str(r2))
    assert res.exit_code == 1
    assert "size 8" in res.output
    res = run("eval", str(q))
    assert res.exit_code == 2
    assert "REF_DIR" in res.output
    res = run("eval", str(q), str(r), "--collection", "c", "--queries", str(q / "a.npy"))
    assert res.exit_code == 2
    assert "not both" in res.output


def test_cli_eval_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(2)
    vecs = rng.standard_normal((30, 8)).astype(np.float32)
    q = write_folder(tmp_path / "q", {f"k{i}.npy": vecs[None, i] + rng.standard_normal(8) for i in range(30)})
    r = write_folder(tmp_path / "r", {f"k{i}.npy": vecs[None, i] for i in range(30)})
    plot = tmp_path / "ranks.png"
    res = run("eval", str(q), str(r), "--plot", str(plot), "--json")
    assert res.exit_code == 0, res.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clamp2_score(tmp_path):
    a = write_folder(
        tmp_path / "a", {"x.npy": np.array([[1, 0]], np.float32), "y.npy": np.array([[1, 2]], np.float32)}
    )
    b = write_folder(tmp_path / "b", {"z.npy": np.array([[0, 1]], np.float32)})
    # mean of a = [1, 1]: cosine with [0, 1] is 1/sqrt(2)
    assert clamp2_score(a, b)["clamp2_score"] == pytest.approx(2**-0.5)
    res = run("score", str(a), str(b), "--json")
    assert json.loads(res.stdout)["clamp2_score"] == round(2**-0.5, 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run("score", str(a), str(empty))
    assert res.exit_code == 1
    assert "no usable features" in res.output


# --- collection evaluation with a fake search function ------------------------------------------------

ITEMS = [
    {"title": "A", "summary_en": "first piece", "filepaths": ["abc/a.abc"]},
    {"title": "B", "summary_en": ["second piece", "other"], "filepaths": ["abc/b.abc"]},
    {"title": "C", "summary_en": "third piece", "filepaths": ["abc/c.abc"]},
    {"title": "D", "filepaths": ["abc/d.abc"]},  # no summary: skipped
    {"title": "E", "summary_en": "fifth piece", "filepaths": ["abc/e.abc"]},
]


def fake_search(ranked: dict[str, list[str]]):
    calls: list[list[str]] = []

    def search(texts: list[str]) -> list[list[str]]:
        calls.append(texts)
        return [ranked[t] for t in texts]

    return search, calls


def test_evaluate_collection_with_fake_search():
    ranked = {
        "first piece": ["A", "B", "C"],  # rank 1
        "second piece": ["C", "B"],  # rank 2
        "third piece": ["A", "B"],  # not retrieved
        "fifth piece": ["x"] * 9 + ["E"],  # rank 10
    }
    search, calls = fake_search(ranked)
    result = evaluate_collection(
        search, ITEMS, "summary_en", id_fn=lambda item: item["title"], k=100, batch_size=3
    )
    assert result.ranks == [1, 2, None, 10]
    assert [len(c) for c in calls] == [3, 1]
    m = result.metrics
    assert m["pairs"] == 4
    assert m["k"] == 100
    assert m["MRR"] == pytest.approx((1 + 0.5 + 0 + 0.1) / 4)
    assert (m["Hit@1"], m["Hit@10"], m["Hit@100"]) == (0.25, 0.75, 0.75)
    assert result.skipped == [("item 4 (abc/d.abc)", "no text in field 'summary_en'")]
    assert list(result.rank_records())[2] == {"id": "C", "query": "third piece", "rank": None}


def test_evaluate_collection_k_limits_hits():
    search, _ = fake_search(
        {"first piece": ["x", "A"], "second piece": ["B"], "third piece": [], "fifth piece": []}
    )
    result = evaluate_collection(search, ITEMS, id_fn=lambda item: item["title"], k=1)
    assert result.ranks == [None, 1, None, None]
    assert "Hit@10" not in result.metrics
    assert result.metrics["Hit@1"] == 0.25


def test_item_text_forms():
    assert item_text({"s": "x"}, "s") == "x"
    assert item_text({"s": ["", "y"]}, "s") == "y"
    assert item_text({"s": {"language": "German", "summary": "z"}}, "s") == "z"
    assert item_text({"s": [{"language": "German", "summary": "w"}]}, "s") == "w"
    assert item_text({"s": "  "}, "s") is None
    assert item_text({}, "s") is None


def test_read_jsonl_reports_bad_lines(tmp_path):
    p = tmp_path / "items.jsonl"
    p.write_text('{"a": 1}\nnot json\n\n[1, 2]\n{"b": 2}\n', encoding="utf-8")
    items, errors = read_jsonl(p)
    assert items == [{"a": 1}, {"b": 2}]
    assert [e[0] for e in errors] == [f"{p}:2", f"{p}:4"]


def test_cli_collection_with_fake_index(tmp_path, monkeypatch):
    """The interface `eval --collection` expects from clamp2_engine.search and ingest.items."""
    import clamp2_engine.ingest.items
    import clamp2_engine.search.session

    seen = {}

    class FakeCollection:
        def unit_states(self, corpus):
            return {"A": "state of A", "B": "state of B"}

    def text_search_fn(collection, *, modality, limit, store=None, mode="semantic"):
        seen.update(collection=collection, modality=modality, limit=limit, mode=mode)

        def fn(texts):
            return [["A"] if t == "first piece" else ["x", "B"] for t in texts]

        fn.close, fn.collection = close, FakeCollection()
        return fn

    def item_point_id(item, *, modality, root, corpus=None, units=None):
        assert units == FakeCollection().unit_states(None)
        seen.update(root=root, corpus=corpus)
        return item["title"]

    def close():
        seen["closed"] = True

    monkeypatch.setattr(clamp2_engine.search.session, "text_search_fn", text_search_fn)
    monkeypatch.setattr(clamp2_engine.ingest.items, "item_point_id", item_point_id)
    q = tmp_path / "items.jsonl"
    q.write_text("".join(json.dumps(i) + "\n" for i in ITEMS[:2]) + "broken\n")
    ranks = tmp_path / "ranks.jsonl"
    res = run(
        "eval",
        "--collection",
        "music",
        "--queries",
        str(q),
        "--modality",
        "mtf",
        "-k",
        "50",
        "--json",
        "--ranks",
        str(ranks),
        "--corpus",
        "demo",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["MRR"], out["Hit@1"], out["pairs"]) == (0.75, 0.5, 2)
    assert seen == {
        "collection": "music",
        "modality": "mtf",
        "limit": 50,
        "mode": "semantic",  # eval measures the model by default
        "root": tmp_path.resolve(),
        "corpus": "demo",
        "closed": True,
    }
    assert "invalid JSON" in out["errors"][0]["reason"]
    assert [json.loads(x)["rank"] for x in ranks.read_text().splitlines()] == [1, 2]
