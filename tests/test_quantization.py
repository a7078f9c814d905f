"""Quantized collections (a compressed copy in RAM, the originals on disk, searches rescored), one shard
per vector group (no slot for a vector a piece lacks), and collections made before either."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge as qe
from click.testing import CliRunner
from helpers import fill, identity, unit_vec

from clamp2_engine.cli import main
from clamp2_engine.search.ranking import nearest, recommend
from clamp2_engine.store import MEMORY, StoreSpec, open_store
from clamp2_engine.store.quantize import convert
from clamp2_engine.store.schema import Point, new_record, point_id
from clamp2_engine.store.spec import MEMORY as MEMORY_URL

KINDS = ("none", "int8", "turbo4", "binary")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def folder(tmp_path: Path, bench_dir: Path) -> Path:
    """Three scores (ABC) and two MIDI Text Format files."""
    root = tmp_path / "pieces"
    root.mkdir()
    for kind in ("abc", "mtf"):
        for p in sorted((bench_dir / kind).glob(f"*.{kind}"))[: 3 if kind == "abc" else 2]:
            shutil.copy(p, root / p.name)
    return root


def groups(root: Path, name: str = "c") -> dict[str, set[str]]:
    """Each vector group's shard of collection ``name`` and the dense vector names its config holds."""
    out = {}
    for shard in sorted((root / name / "shards").iterdir()):
        if shard.is_dir() and (shard / "edge_config.json").is_file():
            config = json.loads((shard / "edge_config.json").read_text())
            out[shard.name] = set(config.get("vectors") or {})
    return out


def ranking(coll, vector, modality="any") -> list[str]:
    return [h.id for h in nearest(coll, vector, modality=modality, limit=6)[0]]


@pytest.mark.parametrize("kind", KINDS)
def test_a_quantized_collection_round_trips(tmp_path, kind):
    root = tmp_path / "edge"
    with open_store(StoreSpec(path=root)) as s:
        exact = ranking(fill(s, "exact"), unit_vec(2))
        coll = s.ensure("c", identity(), {"model": "/m.pth"}, kind)
        assert coll.record.quantization == kind
        coll.upsert([p for page in s.collection("exact").scroll(vectors=True) for p in page])
        coll.optimize()
        assert ranking(coll, unit_vec(2)) == exact
        hits = nearest(coll, unit_vec(2), modality="abc", limit=1)[0]
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)  # rescored against the originals
        assert recommend(coll, [hits[0].id], limit=3, modality="abc")[0].id != hits[0].id
        assert coll.reindex() == 6
        config = json.loads((root / "c" / "shards" / "abc" / "edge_config.json").read_text())
        compressed = kind != "none"
        assert ("quantization_config" in config["vectors"]["abc"]) == compressed
        assert (config["vectors"]["abc"].get("memory") == "cold") == compressed  # originals on disk
    with open_store(StoreSpec(path=root)) as s, open_store(StoreSpec(url=MEMORY_URL)) as mem:
        copy = s.collection("c").copy_to(mem)
        assert copy.record.quantization == kind
        assert ranking(copy, unit_vec(2)) == exact


def shard_configs(root: Path, name: str = "c") -> dict[str, dict]:
    return {
        shard.name: json.loads((shard / "edge_config.json").read_text())
        for shard in sorted((root / name / "shards").iterdir())
        if (shard / "edge_config.json").is_file()
    }


def search_pool_threads() -> int:
    """Qdrant Edge's search pool threads in this process (Linux: their names)."""
    tasks = Path("/proc/self/task")
    return sum((t / "comm").read_text().startswith("edge-search") for t in tasks.iterdir())


@pytest.mark.parametrize("kind", KINDS)
def test_search_threads_are_set_when_opened_and_the_shards_keep_their_configuration(tmp_path, kind):
    root = tmp_path / "edge"
    with open_store(StoreSpec(path=root)) as s:
        coll = s.ensure("c", identity(), {"model": "/m.pth"}, kind)
        coll.upsert([p for page in fill(s, "exact").scroll(vectors=True) for p in page])
        coll.optimize()
        expected = ranking(coll, unit_vec(2))
    made = shard_configs(root)
    assert len(made) == 4  # abc, abc+text, mtf, mtf+text
    for threads in (3, 0):
        before, shards = search_pool_threads(), len(shard_configs(root))
        with open_store(StoreSpec(path=root, search_threads=threads)) as s:
            coll = s.collection("c")
            assert ranking(coll, unit_vec(2)) == expected
            if threads:
                assert search_pool_threads() - before == threads * shards
            new = {"abc": unit_vec(40), "mtf": unit_vec(41)}  # a group made while open
            coll.upsert([Point(point_id("k:new"), new, {"unit": "new"})])
            coll.delete([point_id("k:new")])
        now = shard_configs(root)
        assert set(now) == {*made, "abc+mtf"}
        assert {k: c.pop("max_search_threads") for k, c in now.items()} == dict.fromkeys(now, threads)
        for key, config in made.items():  # given again as made: nothing else changed
            config.pop("max_search_threads", None)
            assert now[key] == config


def test_optimize_converts_without_embedding_again(tmp_path):
    root = tmp_path / "edge"
    with open_store(StoreSpec(path=root)) as s:
        coll = fill(s)
        before = ranking(coll, unit_vec(4))
        vectors = {
            p.id: p.vectors["text"] for p in next(iter(coll.scroll(vectors=True))) if "text" in p.vectors
        }
        coll, changed = convert(s, "c", "none")
        assert changed
        assert coll.record.quantization == "none"
        assert coll.count() == 6
        assert convert(s, "c", "none")[1] is False
        assert ranking(coll, unit_vec(4)) == before
        for p in coll.retrieve(list(vectors), vectors=True):
            np.testing.assert_allclose(p.vectors["text"], vectors[p.id], atol=1e-6)
        assert json.loads((root / "c" / "layout.json").read_text())["quantization"] == "none"
        assert len(list((root / ".set-aside").iterdir())) == 1  # the old folder, kept
    with open_store(StoreSpec(url=MEMORY)) as s:  # a server converts in place
        fill(s)
        coll, changed = convert(s, "c", "binary")
        assert changed
        assert s.collection("c").record.quantization == "binary"
        assert ranking(coll, unit_vec(4))[0] == point_id("k:u4")


def test_the_cli_ingests_quantized_and_converts(folder):
    assert (
        run(
            "ingest", folder, "-c", "q", "--model", "demo", "--jobs", "0", "--quantization", "turbo4"
        ).exit_code
        == 0
    )
    info = json.loads(run("collections", "info", "q", "--json").output)
    assert info["quantization"] == "turbo4"
    res = run("ingest", folder, "-c", "q", "--model", "demo", "--jobs", "0", "--quantization", "none")
    assert res.exit_code != 0
    assert "collections optimize q --quantization none" in res.output
    res = run("collections", "optimize", "q", "--quantization", "none")
    assert res.exit_code == 0, res.output
    assert json.loads(run("collections", "info", "q", "--json").output)["quantization"] == "none"
    assert run("search", "a folk tune", "-c", "q", "--json").exit_code == 0
    bad = run("collections", "optimize", "q", "--quantization", "int4")
    assert bad.exit_code == 2
    assert "int4" in bad.output


def test_a_mixed_corpus_stores_no_slot_for_a_missing_vector(tmp_path):
    root = tmp_path / "edge"
    with open_store(StoreSpec(path=root)) as s:
        coll = fill(s)  # abc, mtf, abc+text, mtf+text
        found = groups(root)
        assert found == {g: set(g.split("+")) for g in ("abc", "abc+text", "mtf", "mtf+text")}
        assert coll.count(vector="abc") == 3
        assert coll.count(vector="text") == 2
        assert coll.count() == 6
        # a piece that gains a summary moves to its new group: one point, never two
        p = coll.retrieve([point_id("k:u1")], vectors=True)[0]
        coll.upsert([Point(p.id, {**p.vectors, "text": unit_vec(7)}, p.payload)])
        assert coll.count() == 6
        assert coll.count(vector="text") == 3
        assert [h.id for h in nearest(coll, unit_vec(7), modality="text", limit=1)[0]] == [p.id]
        assert s.collection("c").info()["groups"] == ["abc", "abc+text", "mtf", "mtf+text"]


def test_a_mixed_folder_of_scores_and_midi_files(folder):
    assert run("ingest", folder, "-c", "mixed", "--model", "demo", "--jobs", "0").exit_code == 0
    info = json.loads(run("collections", "info", "mixed", "--json").output)
    assert info["groups"] == ["abc+mtf", "mtf"]  # the MIDI files: no abc slot
    assert (info["points"], info["vectors"]["abc"], info["vectors"]["mtf"]) == (5, 3, 5)


def legacy_collection(root: Path) -> None:
    """A collection as clamp2-engine wrote it before vector groups and quantization: one shard with every
    vector name, a record without ``quantization``, no ``layout.json``."""
    folder = root / "old"
    folder.mkdir(parents=True)
    params = {v: qe.EdgeVectorParams(size=8, distance=qe.Distance.Cosine) for v in ("abc", "mtf", "text")}
    config = qe.EdgeConfig(
        vectors=params, sparse_vectors={"lexical": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
    )
    shard = qe.EdgeShard.create(str(folder / "shard"), config)
    shard.update(qe.UpdateOperation.create_field_index("composer", qe.PayloadSchemaType.Keyword))
    points = [
        qe.Point(
            uuid.UUID(point_id(f"k:u{i}")),
            {("abc" if i % 2 else "mtf"): unit_vec(i).tolist()},
            {"unit": f"u{i}", "composer": "Bach"},
        )
        for i in range(4)
    ]
    shard.update(qe.UpdateOperation.upsert_points(points))
    shard.close()
    record = new_record(identity(), {"model": "/m.pth"}).as_dict()
    del record["quantization"]
    (folder / "collection.json").write_text(json.dumps({**record, "schema": 4, "points": 4}))


def test_a_collection_made_before_opens_and_searches_as_before(tmp_path):
    root = tmp_path / "edge"
    legacy_collection(root)
    with open_store(StoreSpec(path=root)) as s:
        coll = s.collection("old")
        assert coll.record.quantization == "none"
        assert coll.count() == 4
        assert nearest(coll, unit_vec(1), modality="abc", limit=1)[0][0].id == point_id("k:u1")
        coll.upsert([Point(point_id("k:u9"), {"abc": unit_vec(9), "text": unit_vec(10)}, {"unit": "u9"})])
        assert coll.count() == 5
        assert coll.count(vector="text") == 1
    assert not (root / "old" / "shards").exists()  # its layout is kept
    with open_store(StoreSpec(path=root)) as s:
        assert s.collection("old").count() == 5
        coll, _ = convert(s, "old", "int8")  # and it converts to the new layout
        assert coll.count() == 5
        assert (root / "old" / "shards").is_dir()


@pytest.mark.parametrize("kind", KINDS)
def test_a_server_collection_is_configured_through_qdrant_client(kind):
    with open_store(StoreSpec(url=MEMORY)) as s:
        s.ensure("c", identity(), {"model": "/m.pth"}, kind)
        vectors = s.backend.client.get_collection("c").config.params.vectors
        compressed = kind != "none"
        for name in ("abc", "mtf", "text"):
            assert (vectors[name].quantization_config is not None) == compressed
            assert bool(vectors[name].on_disk) == compressed  # the originals on disk
