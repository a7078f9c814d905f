"""Collections without a model: schema, model record, ids, filters, fusion, copy, and the store's errors."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from clamp2_engine import index
from clamp2_engine.identity import ModelIdentity
from clamp2_engine.store import (
    StoreError,
    StoreInUseError,
    StoreSpec,
    StoreUnreachableError,
    client_close,
    local_size_warning,
    open_client,
    resolve_store,
)

DIM = 8


def identity(sha: str = "a" * 64, dim: int = DIM, kind: str = "clamp2") -> ModelIdentity:
    return ModelIdentity(
        name="test.pth",
        kind=kind,
        checkpoint_sha256=sha,
        embed_dim=dim,
        music_hidden_size=dim,
        text_hidden_size=dim,
        patch_size=64,
        patch_length=512,
        max_text_length=128,
        text_model="text_model",
    )


@pytest.fixture
def client(tmp_path):
    c = open_client(StoreSpec(path=tmp_path / "qdrant"))
    yield c
    client_close(c)


def unit_vec(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def fill(client, name: str = "c", n: int = 6) -> None:
    """n points: even ones have abc, odd ones mtf, every third a text vector."""
    index.ensure_collection(client, name, identity(), {"model": "/m.pth", "text_model": None})
    points = []
    for i in range(n):
        vecs = {"abc" if i % 2 == 0 else "mtf": unit_vec(i)}
        if i % 3 == 0:
            vecs["text"] = unit_vec(100 + i)
        payload = {
            "corpus": "k",
            "unit": f"u{i}",
            "unit_hash": "h",
            "unit_parts": 1,
            "title": f"t{i}",
            "composer": "Bach" if i < 3 else "Handel",
            "metadata": {"genres": ["Folk", "Jazz"] if i % 2 else ["Classical"], "year": 1700 + i},
        }
        points.append(index.make_point(index.point_id(f"k:u{i}"), vecs, payload))
    index.upsert(client, name, points)


# --- ids and record ----------------------------------------------------------------------------------


def test_point_ids_are_stable_uuids():
    a = index.point_id(index.piece_identity("corpus", "x/y.mid"))
    assert a == index.point_id("corpus:x/y.mid") and len(a) == 36
    assert a != index.point_id(index.piece_identity("corpus", "x/y.mid", "2"))
    assert index.piece_identity("c", "f.abc", "3") == "c:f.abc#3"


def test_item_point_id_follows_filepaths_and_root(tmp_path):
    root = tmp_path / "seed"
    item = {"filepaths": ["mtf/a.mtf", "abc/a.abc"], "title": "A"}
    same = {"filepaths": ["abc/a.abc", "./mtf/a.mtf"], "title": "changed metadata"}
    pid = index.item_point_id(item, modality="abc", root=root)
    assert pid == index.item_point_id(same, modality="mtf", root=root)
    assert pid == index.point_id(index.piece_identity("seed", index.item_unit(item)))
    with pytest.raises(ValueError, match="no .abc file"):
        index.item_point_id({"filepaths": "mtf/b.mtf"}, modality="abc", root=root)
    with pytest.raises(ValueError):
        index.item_point_id({"title": "no files"}, modality="any", root=root)


def test_collection_records_its_model_and_refuses_another(client):
    rec = index.ensure_collection(client, "c", identity(), {"model": "/m.pth", "text_model": "/tm"})
    again = index.read_record(client, "c")
    assert again.model == rec.model == identity().as_dict() and again.model_source["text_model"] == "/tm"
    assert index.ensure_collection(client, "c", identity(), {}).model == rec.model
    with pytest.raises(index.ModelMismatchError, match="holds vectors of test.pth"):
        index.ensure_collection(client, "c", identity(sha="b" * 64), {})
    with pytest.raises(index.ModelMismatchError):
        index.ensure_collection(client, "c", identity(dim=16), {})
    with pytest.raises(index.ModelMismatchError, match="CLaMP 2"):
        index.ensure_collection(client, "m3", identity(kind="m3"), {})
    info = client.get_collection("c").config.params.vectors
    assert set(info) == {"abc", "mtf", "text"}
    assert {v.distance.value for v in info.values()} == {"Cosine"} and {v.size for v in info.values()} == {
        DIM
    }


def test_foreign_and_missing_collections_are_clear_errors(client):
    from qdrant_client import models

    client.create_collection(
        "plain", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)
    )
    with pytest.raises(index.CollectionError, match="not made by clamp2-engine"):
        index.read_record(client, "plain")
    with pytest.raises(index.CollectionNotFoundError, match="collections list"):
        index.read_record(client, "nope")
    rows = {r["name"]: r for r in index.list_collections(client)}
    assert rows["plain"]["model"] is None


def test_info_counts_vectors_per_modality(client):
    fill(client)
    info = index.collection_info(client, "c")
    assert info["points"] == 6 and info["vectors"] == {"abc": 3, "mtf": 3, "text": 2}
    assert info["dim"] == DIM and info["model"]["name"] == "test.pth"
    index.drop_collection(client, "c")
    assert not client.collection_exists("c")
    with pytest.raises(index.CollectionNotFoundError):
        index.drop_collection(client, "c")


def test_unit_states_track_completeness(client):
    fill(client)
    states = index.unit_states(client, "c", "k")
    assert set(states) == {f"u{i}" for i in range(6)}
    assert states["u0"].complete("h") and not states["u0"].complete("other")
    assert index.unit_states(client, "c", "another corpus") == {}
    assert index.delete_ids(client, "c", states["u0"].ids) == 1
    assert "u0" not in index.unit_states(client, "c", "k")


# --- search ------------------------------------------------------------------------------------------


def test_search_one_vector_name_matches_numpy(client):
    fill(client)
    q = unit_vec(0)
    hits = index.search(client, "c", q, modality="abc", limit=10)
    assert [h.modality for h in hits] == ["abc"] * 3
    expected = sorted(((float(unit_vec(i) @ q), f"t{i}") for i in (0, 2, 4)), reverse=True)
    assert [h.payload["title"] for h in hits] == [t for _, t in expected]
    assert [round(h.score, 5) for h in hits] == [round(s, 5) for s, _ in expected]
    assert hits[0].rank == 1 and hits[0].score == pytest.approx(1.0)


def test_any_fuses_music_vectors_by_best_score(client):
    fill(client)
    q = unit_vec(3)
    hits = index.search(client, "c", q, modality="any", limit=4)
    scores = {f"t{i}": float(unit_vec(i) @ q) for i in range(6)}
    best = sorted(scores, key=scores.get, reverse=True)[:4]
    assert [h.payload["title"] for h in hits] == best
    assert hits[0].payload["title"] == "t3" and hits[0].modality == "mtf"
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    text_hits = index.search(client, "c", unit_vec(103), modality="text", limit=10)
    assert [h.payload["title"] for h in text_hits][0] == "t3" and len(text_hits) == 2


@pytest.mark.parametrize(
    ("filters", "titles"),
    [
        (["composer=Bach"], {"t0", "t1", "t2"}),
        (["composer!=Bach"], {"t3", "t4", "t5"}),
        (["genres=Jazz"], {"t1", "t3", "t5"}),
        (["genres=Classical,Jazz", "composer=Handel"], {"t3", "t4", "t5"}),
        (["year=1702"], {"t2"}),
        (["metadata.year=1704"], {"t4"}),
    ],
)
def test_filters(client, filters, titles):
    fill(client)
    hits = index.search(
        client, "c", unit_vec(0), modality="any", limit=10, query_filter=index.parse_filters(filters)
    )
    assert {h.payload["title"] for h in hits} == titles


@pytest.mark.parametrize("bad", ["composer", "=Bach", "composer=", " = "])
def test_bad_filters_are_clear(bad):
    with pytest.raises(ValueError, match="bad filter"):
        index.parse_filters([bad])
    assert index.parse_filters([]) is None


def test_unknown_modality(client):
    fill(client)
    with pytest.raises(index.CollectionError, match="unknown modality"):
        index.search(client, "c", unit_vec(0), modality="midi")


def test_batch_search_returns_one_list_per_query(client):
    fill(client)
    rows = index.search_batch(client, "c", np.stack([unit_vec(0), unit_vec(1)]), modality="any", limit=2)
    assert [r[0].payload["title"] for r in rows] == ["t0", "t1"] and all(len(r) == 2 for r in rows)


# --- copying between stores (migrate) ----------------------------------------------------------------


def test_copy_collection_is_complete_and_idempotent(client, tmp_path):
    fill(client, n=7)
    dst = open_client(StoreSpec(path=tmp_path / "other"))
    try:
        assert index.copy_collection(client, dst, "c", page=3) == 7
        assert index.copy_collection(client, dst, "c", page=3) == 7
        assert dst.count("c", exact=True).count == 7
        assert index.read_record(dst, "c").model == index.read_record(client, "c").model
        q = unit_vec(2)
        assert [h.id for h in index.search(dst, "c", q)] == [h.id for h in index.search(client, "c", q)]
        index.ensure_collection(client, "other-model", identity(sha="c" * 64), {})
        with pytest.raises(index.ModelMismatchError):
            index.copy_collection(client, dst, "other-model", dst_name="c")
    finally:
        client_close(dst)


# --- the store -----------------------------------------------------------------------------------------


def test_resolve_store_precedence(monkeypatch, tmp_path):
    home = Path(os.environ["CLAMP2_HOME"])
    assert resolve_store().path == home / "qdrant"
    monkeypatch.setenv("CLAMP2_QDRANT_PATH", str(tmp_path / "env"))
    assert resolve_store().path == tmp_path / "env"
    monkeypatch.setenv("CLAMP2_QDRANT_URL", "http://127.0.0.1:6333")
    assert resolve_store().url == "http://127.0.0.1:6333"
    assert resolve_store(path=tmp_path / "p").path == tmp_path / "p"
    assert resolve_store(url="http://127.0.0.1:1").url == "http://127.0.0.1:1"
    with pytest.raises(StoreError, match="not both"):
        resolve_store(path=tmp_path, url="http://127.0.0.1:1")


HOLDER = textwrap.dedent(
    """
    import sys
    from clamp2_engine.store import StoreSpec, open_client
    client = open_client(StoreSpec(path=sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_second_process_gets_in_use_error(tmp_path):
    store = tmp_path / "qdrant"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(StoreInUseError, match="in use by another process"):
            open_client(StoreSpec(path=store))
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    client_close(open_client(StoreSpec(path=store)))  # free again once the other process is gone


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:1", "cannot reach Qdrant server http://127.0.0.1:1"),
        ("localhost:6333", "not an http(s) URL"),
        ("ftp://127.0.0.1", "not an http(s) URL"),
        ("http://256.1.1.1:6333", "cannot use Qdrant URL"),
    ],
)
def test_bad_urls_fail_fast_and_clearly(url, message):
    started = time.perf_counter()
    with pytest.raises(StoreUnreachableError) as err:
        open_client(resolve_store(url=url), timeout=3)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert time.perf_counter() - started < 30  # generous: only "not a hang" is asserted


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 404

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"no")

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def start(status: int) -> str:
        handler = type("H", (_Handler,), {"status": status})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_a_server_that_is_not_qdrant(http_server):
    with pytest.raises(StoreUnreachableError, match="does not answer like a Qdrant server"):
        open_client(resolve_store(url=http_server(404)))


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_refused_key_names_the_variable_not_the_key(http_server, monkeypatch):
    monkeypatch.setenv("MY_QDRANT_KEY", "s3cret-value")
    url = http_server(401).replace("http://", "http://user:pw@")
    with pytest.raises(StoreUnreachableError) as err:
        open_client(resolve_store(url=url, api_key_env="MY_QDRANT_KEY"))
    msg = str(err.value)
    assert "refused access" in msg and "$MY_QDRANT_KEY" in msg
    assert "s3cret" not in msg and "pw@" not in msg


def test_local_size_warning(client):
    fill(client, n=5)
    assert local_size_warning(client, "c") is None
    msg = local_size_warning(client, "c", threshold=4)
    assert "qdrant-config.yaml" in msg and "migrate" in msg and "5 points" in msg
    assert local_size_warning(client, "missing", threshold=0) is None


# --- the embedded store's matrix search ----------------------------------------------------------------


def qdrant_hits(client, name, q, vname, limit):
    return [(str(p.id), p.score) for p in client.query_points(name, query=q, using=vname, limit=limit).points]


@pytest.mark.parametrize("reopen", [False, True])
@pytest.mark.parametrize("public_api_only", [False, True])
def test_matrix_search_equals_qdrants_own(tmp_path, monkeypatch, reopen, public_api_only):
    if public_api_only:  # as with a qdrant-client whose internals differ
        monkeypatch.setattr(index, "_local_arrays", lambda *a: None)
    spec = StoreSpec(path=tmp_path / "q")
    client = open_client(spec)
    try:
        fill(client, n=40)
        index.delete_ids(client, "c", [index.point_id("k:u4")])
        if reopen:  # vectors loaded back from disk
            client_close(client)
            client = open_client(spec)
        for vname in ("abc", "mtf", "text"):
            q = unit_vec(7)
            ours = [(h.id, h.score) for h in index.search(client, "c", q, modality=vname, limit=8)]
            theirs = qdrant_hits(client, "c", q, vname, 8)
            assert [i for i, _ in ours] == [i for i, _ in theirs]
            assert np.allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-6)
        assert index.point_id("k:u4") not in index._matrix(client, "c", "abc")[0]
    finally:
        client_close(client)


def test_matrices_follow_writes(client):
    fill(client, n=6)
    q = unit_vec(50)
    assert index.search(client, "c", q, modality="abc", limit=1)[0].payload["title"] != "new"
    index.upsert(client, "c", [index.make_point(index.point_id("k:new"), {"abc": q}, {"title": "new"})])
    top = index.search(client, "c", q, modality="abc", limit=1)[0]
    assert top.payload["title"] == "new" and top.score == pytest.approx(1.0)
    index.delete_ids(client, "c", [top.id])
    assert index.search(client, "c", q, modality="abc", limit=1)[0].payload["title"] != "new"
    index.drop_collection(client, "c")
    fill(client, n=2)
    assert len(index.search(client, "c", q, modality="abc", limit=10)) == 1


class NoMetadataServer:
    """A client whose server keeps no collection metadata (Qdrant before 1.16)."""

    def __init__(self, client):
        self._inner = client

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def create_collection(self, *args, metadata=None, **kwargs):
        return self._inner.create_collection(*args, **kwargs)

    def update_collection(self, *args, metadata=None, **kwargs):
        return True


def test_record_in_a_reserved_point_where_metadata_is_not_kept(client):
    old = NoMetadataServer(client)
    fill(old, n=4)
    assert client.get_collection("c").config.metadata is None
    assert index.read_record(old, "c").model["name"] == "test.pth"
    with pytest.raises(index.ModelMismatchError):
        index.ensure_collection(old, "c", identity(sha="b" * 64), {})
    rec = index.read_record(old, "c")
    rec.model_source["text_model"] = "/somewhere"
    index.write_record(old, "c", rec)
    assert index.read_record(old, "c").model_source["text_model"] == "/somewhere"
    assert index.piece_count(old, "c") == 4 and client.count("c").count == 5
    assert set(index.unit_states(old, "c", "k")) == {"u0", "u1", "u2", "u3"}
    hits = index.search(old, "c", unit_vec(0), modality="any", limit=10)
    assert index.RECORD_ID not in {h.id for h in hits} and len(hits) == 4
    assert index.collection_info(old, "c")["points"] == 4
