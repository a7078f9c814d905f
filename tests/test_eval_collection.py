"""`eval --collection`: text-to-music retrieval metrics through an ingested collection, end to end."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from index_helpers import build_seed, model_args

from clamp2_engine.cli import main
from clamp2_engine.ingest.items import item_point_id
from clamp2_engine.search.ranking import nearest
from clamp2_engine.search.session import text_search_fn
from clamp2_engine.store import CollectionError, CollectionNotFoundError, open_store

NAMES = [
    "bach_bwv253",
    "bach_bwv335",
    "bach_bwv387",
    "bach_bwv11_6",
    "bach_bwv16_6",
    "bach_bwv1_6",
    "bach_bwv4_8",
    "bach_bwv154_3",
]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["abc", "mtf"])
def test_eval_collection_end_to_end(tmp_path, parity_dir, bench_dir, modality, text_model):
    seed = tmp_path / "seed"
    only_mtf = {
        "title": "no abc",
        "summary_en": "a piece with MIDI only",
        "filepaths": ["mtf/bach_bwv4_8.mtf"],
    }
    items = build_seed(seed, bench_dir, NAMES[:6], extra_items=[only_mtf])
    shutil.copy(bench_dir / "mtf" / "bach_bwv4_8.mtf", seed / "mtf")
    res = run("ingest", seed, "-c", "chorales", "--json", *model_args(parity_dir))  # the default store
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["points"] == 7

    res = run(
        "eval",
        "--collection",
        "chorales",
        "--queries",
        seed / "items.jsonl",
        "--modality",
        modality,
        "--json",
        "--ranks",
        tmp_path / "ranks.jsonl",
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["collection"] == "chorales"
    assert out["modality"] == modality
    assert out["pairs"] == (6 if modality == "abc" else 7)
    if modality == "abc":  # the MIDI-only item has no abc vector: skipped, with the reason
        assert out["skipped"] == 1
        assert "no .abc file" in out["errors"][0]["reason"]

    # the same ranks by hand: each summary's encode_text against the collection
    model = text_model
    with open_store() as store:
        coll = store.collection("chorales")
        expected = []
        for item in items:
            if modality == "abc" and item is only_mtf:
                continue
            hits = nearest(coll, model.encode_text(item["summary_en"]), modality=modality, limit=100)[0]
            ids = [h.id for h in hits]
            expected.append(ids.index(item_point_id(item, modality=modality, root=seed)) + 1)
    ranks = [json.loads(line)["rank"] for line in (tmp_path / "ranks.jsonl").read_text().splitlines()]
    assert ranks == expected
    assert out["MRR"] == pytest.approx(sum(1 / r for r in expected) / len(expected), abs=1e-4)


def test_text_search_fn_directly(tmp_path, parity_dir, bench_dir):
    seed = tmp_path / "seed"
    items = build_seed(seed, bench_dir, NAMES[:3])
    for item, name in zip(items, ["en_jig", "de_choral", "zh_folk"], strict=True):  # clearly different texts
        item["summary_en"] = (parity_dir / "inputs" / "txt" / f"{name}.txt").read_text(encoding="utf-8")
    (seed / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    assert run("ingest", seed, "-c", "c", "-q", *model_args(parity_dir)).exit_code == 0
    fn = text_search_fn("c", modality="text", limit=3)
    try:
        rows = fn([it["summary_en"] for it in items])
        # a summary finds its own piece's text vector first
        assert [r[0] for r in rows] == [item_point_id(it, modality="text", root=seed) for it in items]
        assert fn([]) == []
    finally:
        fn.close()
    with pytest.raises(CollectionNotFoundError):
        text_search_fn("missing", modality="abc")
    with pytest.raises(CollectionError, match="unknown modality"):
        text_search_fn("c", modality="midi")
