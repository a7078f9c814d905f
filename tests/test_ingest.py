"""Ingest with the fixture model: plain folders and the seed layout, re-runs, updates, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from index_helpers import build_seed, cos

from clamp2_engine.ingest.corpus import CorpusError, discover
from clamp2_engine.ingest.items import item_point_id
from clamp2_engine.ingest.pipeline import ingest_corpus
from clamp2_engine.music.patches import encode_patches
from clamp2_engine.runlog import ErrorLog
from clamp2_engine.search.ranking import nearest
from clamp2_engine.store import Collection, ModelMismatchError, StoreSpec, open_store, point_id


@pytest.fixture(scope="module")
def model(parity_model):
    return parity_model


@pytest.fixture
def client(tmp_path):
    with open_store(StoreSpec(path=tmp_path / "qdrant")) as store:
        yield store


def run(client, model, root, name="c", errors=None, **kwargs):
    corpus = discover(root, errors=errors, **{k: kwargs.pop(k) for k in ("metadata", "items") if k in kwargs})
    return ingest_corpus(client, name, corpus, model, errors=errors, progress=False, **kwargs)


def points(client, name="c"):
    pts = [p for page in client.collection(name).scroll(vectors=True) for p in page]
    return {p.payload["piece_id"]: p for p in pts}


# --- the parity inputs, a plain folder ---------------------------------------------------------------


@pytest.fixture(scope="module")
def parity_store(tmp_path_factory, parity_dir, model):
    path = tmp_path_factory.mktemp("parity") / "qdrant"
    with open_store(StoreSpec(path=path)) as client:
        errors = ErrorLog(path.parent / "errors.jsonl")
        report = run(client, model, parity_dir / "inputs", "parity", errors=errors, render=False, jobs=1)
        yield client, report, errors


@pytest.mark.slow  # the parity inputs' ingest (~20 s) is shared
def test_parity_inputs_all_become_points(parity_store, parity_dir):
    client, report, errors = parity_store
    inputs = parity_dir / "inputs"
    music = [p for p in inputs.rglob("*") if p.suffix in (".abc", ".mtf", ".mid", ".xml", ".mxl")]
    assert report.counts["units"] == report.counts["points"] == len(music) == 43
    assert report.counts["failed"] == errors.count - errors.notes == 0  # fallbacks taken are notes
    assert {r.split(": ")[0] for r in errors.reasons} == {"note"}
    info = client.collection("parity").info()
    # scores give ABC, MIDI and MTF give MTF (no rendering here), no summaries: no text vectors
    n_scores = len([p for p in music if p.suffix in (".abc", ".xml", ".mxl")])
    assert info["vectors"] == {
        "abc": n_scores,
        "mtf": len(music) - n_scores,
        "text": 0,
        "lexical": len(music),
    }
    assert (
        info["model"]["checkpoint_sha256"]
        == json.loads((parity_dir / "manifest.json").read_text())["checkpoints"]["clamp2.pth"]
    )


@pytest.mark.slow  # the parity inputs' ingest (~20 s) is shared
def test_stored_vectors_are_the_reference_features(parity_store, parity_dir):
    client, _, _ = parity_store
    pts = points(client, "parity")
    expected = parity_dir / "expected" / "clamp2_normalized"
    for piece_id, vec, ref in [
        ("inputs:abc/bach_bwv66_6.abc", "abc", expected / "abc" / "bach_bwv66_6.npy"),
        ("inputs:mtf/primitive_test05.mtf", "mtf", expected / "mtf" / "primitive_test05.npy"),
        ("inputs:midi/render_bach_bwv66_6.mid", "mtf", expected / "mtf" / "render_bach_bwv66_6.npy"),
    ]:
        stored = np.asarray(pts[piece_id].vectors[vec])
        assert cos(stored, np.load(ref)[0]) > 0.9999, piece_id


@pytest.mark.slow  # the parity inputs' ingest (~20 s) is shared
def test_payload_of_plain_files(parity_store, parity_dir):
    client, _, _ = parity_store
    pts = points(client, "parity")
    p = pts["inputs:xml/bach_bwv66_6.mxl"].payload
    assert p["source"] == "xml/bach_bwv66_6.mxl"
    assert p["sources"] == {"abc": "xml/bach_bwv66_6.mxl"}
    assert p["formats"] == ["mxl"]
    assert p["modalities"] == ["abc"]
    assert p["corpus"] == "inputs"
    c = pts["inputs:xml/corelli_opus3no1_1grave.xml"].payload  # title and composer read from the MusicXML
    assert (c["title"], c["composer"]) == ("Sonata da Chiesa, No. I (opus 3, no. 1)", "Arcangelo Corelli")
    assert p["model"]["name"] == "clamp2.pth"
    assert p["unit_parts"] == 1
    assert p["part"] == ""
    m = pts["inputs:mtf/primitive_test01.mtf"].payload
    text = (parity_dir / "inputs" / "mtf" / "primitive_test01.mtf").read_text()
    assert m["lengths"] == {"mtf": len(encode_patches(text))}
    assert m["metadata"] == {}
    assert m["summary_en"] is None
    assert pts["inputs:xml/bach_bwv66_6.mxl"].id == point_id("inputs:xml/bach_bwv66_6.mxl")


@pytest.fixture
def written(monkeypatch):
    """The piece ids every upsert writes."""
    seen: list[str] = []
    real = Collection.upsert

    def spy(self, pts):
        seen.extend(p.payload["piece_id"] for p in pts)
        real(self, pts)

    monkeypatch.setattr(Collection, "upsert", spy)
    return seen


@pytest.mark.slow  # the parity inputs' ingest (~20 s) is shared
def test_reingest_changes_nothing(parity_store, parity_dir, model, written):
    client, first, _ = parity_store
    before = points(client, "parity")
    again = run(client, model, parity_dir / "inputs", "parity", render=False, jobs=0)
    assert again.counts["skipped"] == 43
    assert again.counts["embedded"] == again.counts["removed"] == 0
    assert written == []
    after = points(client, "parity")
    assert {k: p.payload for k, p in after.items()} == {k: p.payload for k, p in before.items()}


# --- updates -----------------------------------------------------------------------------------------


def test_delete_add_and_change_update_exactly_those(client, model, parity_dir, tmp_path, written):
    root = tmp_path / "corpus"
    shutil.copytree(parity_dir / "inputs" / "mtf", root / "mtf")
    shutil.copy(parity_dir / "inputs" / "midi" / "primitive_test01.mid", root / "one.mid")
    first = run(client, model, root)
    assert first.counts["points"] == len(written) == 8
    before = set(points(client))
    written.clear()
    (root / "mtf" / "primitive_test10.mtf").unlink()
    shutil.copy(parity_dir / "inputs" / "midi" / "primitive_test20.mid", root / "two.mid")
    changed = root / "mtf" / "primitive_test15.mtf"
    changed.write_text((parity_dir / "inputs" / "mtf" / "primitive_test01.mtf").read_text())
    second = run(client, model, root)
    assert (second.counts["removed"], second.counts["embedded"], second.counts["skipped"]) == (1, 2, 6)
    assert sorted(written) == ["corpus:mtf/primitive_test15.mtf", "corpus:two.mid"]
    assert set(points(client)) == before - {"corpus:mtf/primitive_test10.mtf"} | {"corpus:two.mid"}


def test_model_change_is_refused(client, model, parity_dir, tmp_path):
    import torch

    from clamp2_engine.checkpoints import load_checkpoint, save_checkpoint

    root = tmp_path / "corpus"
    shutil.copytree(parity_dir / "inputs" / "mtf", root)
    run(client, model, root)
    sd = load_checkpoint(parity_dir / "checkpoints" / "clamp2.pth")["model"]
    sd = {k: (v + 0.01 if k == "music_proj.bias" else v) for k, v in sd.items()}
    other = save_checkpoint(tmp_path / "other.pth", {k: torch.as_tensor(v) for k, v in sd.items()})
    other_model = type(model).from_pretrained(other, towers=("music",))
    with pytest.raises(ModelMismatchError, match="holds vectors of clamp2.pth"):
        run(client, other_model, root)
    assert client.collection("c").count() == 7


# --- the seed layout ---------------------------------------------------------------------------------


def test_seed_layout(client, model, tmp_path, bench_dir):
    root = tmp_path / "seed"
    bad = [
        {"title": "missing file", "filepaths": ["abc/nope.abc"]},
        {"title": "escapes", "filepaths": ["../../etc/passwd.abc"]},
        {"title": "no files"},
    ]
    items = build_seed(root, bench_dir, extra_items=bad)
    items.append(dict(items[0]))  # a duplicate
    with open(root / "items.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(items[-1]) + "\nnot json\n")
    errors = ErrorLog(tmp_path / "errors.jsonl")
    report = run(client, model, root, errors=errors)
    assert report.layout == "seed"
    assert report.counts["points"] == 6
    reasons = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    text = " | ".join(r["reason"] for r in reasons)
    assert "not found" in text
    assert "escapes" in text
    assert "no filepaths" in text
    assert "duplicate" in text
    assert "invalid JSON" in text
    assert len(reasons) == 5
    pts = points(client)
    item = items[1]
    pid = item_point_id(item, modality="abc", root=root)
    [p] = [p for p in pts.values() if str(p.id) == pid]
    pl = p.payload
    assert pl["title"] == item["title"]
    assert pl["composer"] == "J.S. Bach"
    stated = {"title": item["title"], "composer": "J.S. Bach", "genres": item["genres"]}
    assert {k: pl["metadata"][k] for k in stated} == stated  # the item's fields, as given
    assert pl["metadata"]["voices"] == 4  # and what the music states
    assert set(pl["metadata"]) == {*stated, "meter", "key", "voices", "instruments", "bars"}
    assert pl["summary_en"] == item["summary_en"]
    assert pl["summary_nen"] == item["summary_nen"]
    assert pl["sources"] == {"abc": item["filepaths"][0], "mtf": item["filepaths"][1]}
    assert pl["formats"] == ["abc", "mtf"]
    assert pl["modalities"] == ["abc", "mtf", "text"]
    abc_text = (root / item["filepaths"][0]).read_text()
    assert pl["lengths"]["abc"] == len(encode_patches(abc_text))
    assert cos(p.vectors["text"], model.encode_text(item["summary_en"])) > 0.99999
    assert cos(p.vectors["abc"], model.encode_music(root / item["filepaths"][0])) > 0.99999
    assert cos(p.vectors["mtf"], model.encode_music(root / item["filepaths"][1])) > 0.99999
    # metadata edits re-embed that item only
    items[1]["genres"] = ["Changed"]
    (root / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items[:6]), encoding="utf-8")
    again = run(client, model, root)
    assert (again.counts["embedded"], again.counts["skipped"], again.counts["removed"]) == (1, 5, 0)
    hits = nearest(client.collection("c"), p.vectors["abc"], filters=["genres=Changed"])[0]
    assert [h.id for h in hits] == [pid]


def test_seed_layout_needs_one_jsonl(tmp_path, bench_dir):
    build_seed(tmp_path, bench_dir, names=["bach_bwv253"])
    (tmp_path / "other.jsonl").write_text("{}\n")
    with pytest.raises(CorpusError, match="several JSONL"):
        discover(tmp_path)
    corpus = discover(tmp_path, metadata=tmp_path / "items.jsonl")
    assert corpus.layout == "seed"
    assert len(corpus.units) == 1
    assert discover(tmp_path / "abc").layout == "plain"


# --- conversion: rendering, tune books, bad files ----------------------------------------------------

TUNES = """X:1
T:First Reel
C:Trad.
M:4/4
L:1/8
K:D
|:DFAd fdAF|GBdg fdAF:|

X:2
T:Second Jig
M:6/8
L:1/8
K:G
|:GAB cBA|BGE DEG:|
"""


def test_scores_render_to_mtf_and_tune_books_give_pieces(client, model, parity_dir, tmp_path):
    root = tmp_path / "scores"
    root.mkdir()
    shutil.copy(parity_dir / "inputs" / "xml" / "corelli_opus3no1_1grave.xml", root)
    (root / "book.abc").write_text(TUNES)
    report = run(client, model, root, jobs=1)
    assert report.counts["points"] == 3
    assert report.counts["failed"] == 0
    pts = points(client)
    assert set(pts) == {"scores:corelli_opus3no1_1grave.xml", "scores:book.abc#1", "scores:book.abc#2"}
    for p in pts.values():
        assert p.payload["modalities"] == ["abc", "mtf"]
    assert pts["scores:book.abc#1"].payload["title"] == "First Reel"
    assert pts["scores:book.abc#1"].payload["composer"]
    assert pts["scores:book.abc#2"].payload["title"] == "Second Jig"
    assert pts["scores:book.abc#1"].payload["unit_parts"] == 2
    # the book loses a tune: its point goes, the other stays
    (root / "book.abc").write_text(TUNES.split("\nX:2")[0] + "\n")
    again = run(client, model, root, jobs=0)
    assert again.counts["removed"] == 2
    assert again.counts["points"] == 1
    assert set(points(client)) == {"scores:corelli_opus3no1_1grave.xml", "scores:book.abc"}


def test_bad_files_are_logged_and_the_rest_goes_on(client, model, parity_dir, tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    shutil.copy(parity_dir / "inputs" / "mtf" / "primitive_test01.mtf", root)
    (root / "empty.mid").write_bytes(b"")
    (root / "broken.mxl").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "binary.mtf").write_bytes(b"\x00\x01\x02")
    (root / "notes.txt").write_text("not music, not a unit")
    errors = ErrorLog(tmp_path / "errors.jsonl")
    report = run(client, model, root, errors=errors, jobs=0)
    assert report.counts["units"] == 4
    assert report.counts["points"] == 1
    assert report.counts["failed"] == 3
    logged = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    sources = {Path(r["source"]).name for r in logged}
    assert {"empty.mid", "broken.mxl", "binary.mtf"} <= sources
    assert all(r["stage"] and r["reason"] for r in logged)
