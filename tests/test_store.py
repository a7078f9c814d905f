"""Collections without a model: schema, model record, ids, filters, fusion, copy, and the store's errors."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import DIM, fill, identity, spec_for, unit_vec

from clamp2_engine.ingest.items import item_point_id, item_unit
from clamp2_engine.search.explain import explain_empty
from clamp2_engine.search.ranking import nearest, recommend
from clamp2_engine.store import (
    MEMORY,
    CollectionError,
    CollectionNotFoundError,
    ModelMismatchError,
    Point,
    StoreError,
    StoreInUseError,
    StoreSpec,
    StoreUnreachableError,
    open_store,
    parse_filters,
    piece_identity,
    point_id,
    resolve_store,
)
from clamp2_engine.store.schema import RECORD_ID, SCHEMA_VERSION
from clamp2_engine.store.server import connect

# --- ids and record ----------------------------------------------------------------------------------


def test_point_ids_are_stable_uuids():
    a = point_id(piece_identity("corpus", "x/y.mid"))
    assert a == point_id("corpus:x/y.mid")
    assert len(a) == 36
    assert a != point_id(piece_identity("corpus", "x/y.mid", "2"))
    assert piece_identity("c", "f.abc", "3") == "c:f.abc#3"


def test_engine_ids_read_as_the_store_writes_them():
    """Qdrant Edge's ``uuid.UUID`` ids come back as the text the store wrote (memoised: the same again)."""
    import uuid

    from clamp2_engine.store.edge_convert import id_text

    pid = point_id("corpus:x/y.mid")
    assert id_text(uuid.UUID(pid)) == pid == id_text(uuid.UUID(pid))
    assert [id_text(uuid.UUID(int=n)) for n in (0, 2**128 - 1)] == [
        str(uuid.UUID(int=n)) for n in (0, 2**128 - 1)
    ]
    assert id_text(7) == "7"
    assert id_text(pid) == pid


def test_item_point_id_follows_filepaths_and_root(tmp_path):
    root = tmp_path / "seed"
    item = {"filepaths": ["mtf/a.mtf", "abc/a.abc"], "title": "A"}
    same = {"filepaths": ["abc/a.abc", "./mtf/a.mtf"], "title": "changed metadata"}
    pid = item_point_id(item, modality="abc", root=root)
    assert pid == item_point_id(same, modality="mtf", root=root)
    assert pid == point_id(piece_identity("seed", item_unit(item)))
    with pytest.raises(ValueError, match="no .abc file"):
        item_point_id({"filepaths": "mtf/b.mtf"}, modality="abc", root=root)
    with pytest.raises(ValueError):
        item_point_id({"title": "no files"}, modality="any", root=root)


def test_collection_records_its_model_and_refuses_another(store):
    coll = store.ensure("c", identity(), {"model": "/m.pth", "text_model": "/tm"})
    again = store.collection("c").record
    assert again.model == coll.record.model == identity().as_dict()
    assert again.model_source["text_model"] == "/tm"
    assert store.ensure("c", identity(), {}).record.model == coll.record.model
    with pytest.raises(ModelMismatchError, match="holds vectors of test.pth"):
        store.ensure("c", identity(sha="b" * 64), {})
    with pytest.raises(ModelMismatchError):
        store.ensure("c", identity(dim=16), {})
    with pytest.raises(ModelMismatchError, match="CLaMP 2"):
        store.ensure("m3", identity(kind="m3"), {})
    assert not store.exists("m3")


def test_foreign_and_missing_collections_are_clear_errors(tmp_path):
    from qdrant_client import models

    with open_store(StoreSpec(url=MEMORY)) as s:
        s.backend.client.create_collection(
            "plain", vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)
        )
        with pytest.raises(CollectionError, match="not made by clamp2-engine"):
            s.collection("plain")
        with pytest.raises(CollectionNotFoundError, match="collections list"):
            s.collection("nope")
        rows = {r["name"]: r for r in s.list()}
        assert rows["plain"]["model"] is None


def test_info_counts_vectors_per_modality(store):
    fill(store)
    info = store.collection("c").info()
    assert info["points"] == 6
    assert info["vectors"] == {"abc": 3, "mtf": 3, "text": 2, "lexical": 6}
    assert info["dim"] == DIM
    assert info["model"]["name"] == "test.pth"
    assert info["engine"] == ("edge" if store.spec.engine == "edge" else "server")
    assert [r["points"] for r in store.list()] == [6]
    store.drop("c")
    assert not store.exists("c")
    with pytest.raises(CollectionNotFoundError):
        store.drop("c")


def test_unit_states_track_completeness(store):
    coll = fill(store)
    states = coll.unit_states("k")
    assert set(states) == {f"u{i}" for i in range(6)}
    assert states["u0"].complete("h")
    assert not states["u0"].complete("other")
    assert coll.unit_states("another corpus") == {}
    assert coll.delete(states["u0"].ids) == 1
    assert "u0" not in coll.unit_states("k")


# --- search ------------------------------------------------------------------------------------------


def test_search_one_vector_name_matches_numpy(store):
    coll = fill(store)
    q = unit_vec(0)
    hits = nearest(coll, q, modality="abc", limit=10)[0]
    assert [h.modality for h in hits] == ["abc"] * 3
    expected = sorted(((float(unit_vec(i) @ q), f"t{i}") for i in (0, 2, 4)), reverse=True)
    assert [h.payload["title"] for h in hits] == [t for _, t in expected]
    assert [round(h.score, 5) for h in hits] == [round(s, 5) for s, _ in expected]
    assert hits[0].rank == 1
    assert hits[0].score == pytest.approx(1.0)
    assert "keys" not in hits[0].payload
    assert "keys" not in hits[0].as_dict()["payload"]


def test_any_fuses_music_vectors_by_best_score(store):
    coll = fill(store)
    q = unit_vec(3)
    hits = nearest(coll, q, modality="any", limit=4)[0]
    scores = {f"t{i}": float(unit_vec(i) @ q) for i in range(6)}
    best = sorted(scores, key=scores.get, reverse=True)[:4]
    assert [h.payload["title"] for h in hits] == best
    assert hits[0].payload["title"] == "t3"
    assert hits[0].modality == "mtf"
    assert [h.rank for h in hits] == [1, 2, 3, 4]
    text_hits = nearest(coll, unit_vec(103), modality="text", limit=10)[0]
    assert [h.payload["title"] for h in text_hits][0] == "t3"
    assert len(text_hits) == 2
    paged = nearest(coll, q, modality="any", limit=2, offset=2)[0]
    assert [h.payload["title"] for h in paged] == best[2:4]
    assert [h.rank for h in paged] == [3, 4]


@pytest.mark.parametrize(
    ("filters", "titles"),
    [
        (["composer=Bach"], {"t0", "t1", "t2"}),
        (["composer=bach"], {"t0", "t1", "t2"}),
        (["composer!=BACH"], {"t3", "t4", "t5"}),
        (["genres=Jazz"], {"t1", "t3", "t5"}),
        (["genres=classical,JAZZ", "composer=Handel"], {"t3", "t4", "t5"}),
        (["year=1702"], {"t2"}),
        (["metadata.year=1704"], {"t4"}),
        (["metadata.genres=folk"], {"t1", "t3", "t5"}),
    ],
)
def test_filters(store, filters, titles):
    coll = fill(store)
    hits = nearest(coll, unit_vec(0), modality="any", limit=10, filters=filters)[0]
    assert {h.payload["title"] for h in hits} == titles


@pytest.mark.parametrize("bad", ["composer", "=Bach", "composer=", " = ", "com poser=x", "a..b=1"])
def test_bad_filters_are_clear(bad):
    with pytest.raises(ValueError, match="bad filter"):
        parse_filters([bad])
    assert not parse_filters([])


def test_empty_results_say_which_filter_matched_nothing(store):
    coll = fill(store)
    assert explain_empty(coll, ["composer=Bahc"]) == "no piece has composer 'bahc'; closest: 'Bach'"
    assert explain_empty(coll, ["composer==bach"]) == "no piece has composer 'bach'; closest: 'Bach'"
    assert explain_empty(coll, ["colour=red"]) == "no piece has a field 'colour'"
    assert explain_empty(coll, ["composer=Bach", "genres=Classical", "year=1701"]) == (
        "no piece matches all the filters together"
    )
    assert explain_empty(coll, ["composer=Bach"]) is None
    assert explain_empty(coll, []) is None


def test_unknown_modality(store):
    coll = fill(store)
    with pytest.raises(CollectionError, match="unknown modality"):
        nearest(coll, unit_vec(0), modality="midi")


def test_batch_search_returns_one_list_per_query(store):
    coll = fill(store)
    rows = nearest(coll, np.stack([unit_vec(0), unit_vec(1)]), modality="any", limit=2)
    assert [r[0].payload["title"] for r in rows] == ["t0", "t1"]
    assert all(len(r) == 2 for r in rows)


def test_recommend_more_like_less_like(store):
    coll = fill(store, n=12)
    like, unlike = point_id("k:u0"), point_id("k:u2")
    hits = recommend(coll, [like], modality="abc", limit=10)
    ids = [h.id for h in hits]
    assert like not in ids
    assert len(ids) == 5
    v0 = unit_vec(0)
    expected = sorted((i for i in range(2, 12, 2)), key=lambda i: -float(unit_vec(i) @ v0))
    assert [h.payload["title"] for h in hits] == [f"t{i}" for i in expected]
    away = recommend(coll, [like], [unlike], modality="abc", limit=10)
    assert unlike not in [h.id for h in away]
    assert len(away) == 4
    with pytest.raises(CollectionError, match="no piece"):
        recommend(coll, [point_id("k:missing")])
    with pytest.raises(CollectionError, match="need a query or pieces to be like"):
        recommend(coll, [], [unlike])


def test_diverse_search_trades_near_copies_for_variety(store):
    coll = store.ensure("d", identity(), {})
    rng = np.random.default_rng(1)
    base = rng.standard_normal((10, DIM))
    points = [
        Point(point_id(f"{i}-{c}"), {"abc": base[i] + 0.01 * rng.standard_normal(DIM)}, {"title": f"p{i}"})
        for i in range(10)
        for c in range(4)
    ]
    coll.upsert(points)
    q = base[3] + 0.2 * rng.standard_normal(DIM)
    plain = [h.payload["title"] for h in nearest(coll, q, modality="abc", limit=4)[0]]
    diverse = [h.payload["title"] for h in nearest(coll, q, modality="abc", limit=4, diversity=0.5)[0]]
    assert plain == ["p3"] * 4
    assert diverse[0] == "p3"
    assert len(set(diverse)) == 4


# --- copying between stores (migrate) ----------------------------------------------------------------


@pytest.mark.parametrize("target", ["edge", "server"])
def test_copy_is_complete_verified_and_idempotent(store, tmp_path, target):
    coll = fill(store, n=7)
    with open_store(spec_for(target, tmp_path, "other")) as dst:
        assert coll.copy_to(dst, page=3).count() == 7
        copied = coll.copy_to(dst, page=3)
        assert copied.count() == 7
        assert copied.count(vector="text") == 3
        assert copied.record.model == coll.record.model
        q = unit_vec(2)
        assert [h.id for h in nearest(copied, q)[0]] == [h.id for h in nearest(coll, q)[0]]
        assert nearest(copied, q, filters=["composer=bach"])[0]
        other = store.ensure("other-model", identity(sha="c" * 64), {})
        with pytest.raises(ModelMismatchError):
            other.copy_to(dst, "c")
        copied.delete([point_id("k:u1")])
        with pytest.raises(StoreError, match="copy incomplete"):
            copied.verify_copy_of(coll)


def test_old_local_mode_folder_is_migrated_to_edge(tmp_path):
    """A folder written by qdrant-client's local mode (clamp2-engine before Qdrant Edge)."""
    from qdrant_client import QdrantClient, models

    old = tmp_path / "old"
    client = QdrantClient(path=str(old))
    params = models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    meta = {"schema": 1, "model": identity().as_dict(), "model_source": {}, "created": "then"}
    client.create_collection(
        "c", vectors_config={v: params for v in ("abc", "mtf", "text")}, metadata={"clamp2_engine": meta}
    )
    client.upsert(
        "c",
        [
            models.PointStruct(
                id=point_id(f"k:u{i}"),
                vector={"abc": unit_vec(i).tolist()},
                payload={"title": f"t{i}", "composer": "Bach"},
            )
            for i in range(5)
        ],
    )
    client.close()
    with pytest.raises(StoreError, match="--from-local-mode"):
        open_store(StoreSpec(path=old))
    with (
        open_store(StoreSpec(path=old, engine="local-mode")) as src,
        open_store(StoreSpec(path=tmp_path / "new")) as dst,
    ):
        copied = src.collection("c").copy_to(dst)
        assert copied.count() == 5
        assert copied.record.schema == SCHEMA_VERSION
        assert copied.record.lexical
        assert [
            h.payload["title"] for h in nearest(copied, unit_vec(1), filters=["composer=BACH"], limit=1)[0]
        ] == ["t1"]


# --- the store -----------------------------------------------------------------------------------------


def test_resolve_store_precedence(monkeypatch, tmp_path):
    home = Path(os.environ["CLAMP2_HOME"])
    assert resolve_store().path == home / "edge"
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
    from clamp2_engine.store import StoreSpec, open_store
    store = open_store(StoreSpec(path=sys.argv[1]))
    store.collection("c").count()
    print("ready", flush=True)
    sys.stdin.read()
    """
)


@pytest.mark.parametrize("end", ["exit", "kill"])
def test_second_process_gets_in_use_error_until_the_first_is_gone(tmp_path, end):
    path = tmp_path / "edge"
    with open_store(StoreSpec(path=path)) as s:
        fill(s)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        with open_store(StoreSpec(path=path)) as s:
            with pytest.raises(StoreInUseError, match="in use by another process"):
                s.collection("c")
            assert s.list()[0]["points"] is None  # listed as in use, not an error
    finally:
        if end == "kill":
            proc.kill()
        else:
            proc.stdin.close()
        proc.wait(timeout=30)
    with open_store(StoreSpec(path=path)) as s:  # free again once the other process is gone, even killed
        assert s.collection("c").count() == 6


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
    with pytest.raises(StoreUnreachableError) as err:
        connect(resolve_store(url=url), timeout=3)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


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
        open_store(resolve_store(url=http_server(404)))


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_refused_key_names_the_variable_not_the_key(http_server, monkeypatch):
    monkeypatch.setenv("MY_QDRANT_KEY", "s3cret-value")
    url = http_server(401).replace("http://", "http://user:pw@")
    with pytest.raises(StoreUnreachableError) as err:
        open_store(resolve_store(url=url, api_key_env="MY_QDRANT_KEY"))
    msg = str(err.value)
    assert "refused access" in msg
    assert "$MY_QDRANT_KEY" in msg
    assert "s3cret" not in msg
    assert "pw@" not in msg


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


def test_record_in_a_reserved_point_where_metadata_is_not_kept():
    with open_store(StoreSpec(url=MEMORY)) as s:
        client = s.backend.client
        s.backend.client = NoMetadataServer(client)
        coll = fill(s, n=4)
        assert client.get_collection("c").config.metadata is None
        assert s.collection("c").record.model["name"] == "test.pth"
        with pytest.raises(ModelMismatchError):
            s.ensure("c", identity(sha="b" * 64), {})
        rec = s.collection("c").record
        rec.model_source["text_model"] = "/somewhere"
        coll.write_record(rec)
        assert s.collection("c").record.model_source["text_model"] == "/somewhere"
        assert coll.count() == 4
        assert client.count("c").count == 5
        assert set(coll.unit_states("k")) == {"u0", "u1", "u2", "u3"}
        hits = nearest(coll, unit_vec(0), modality="any", limit=10)[0]
        assert RECORD_ID not in {h.id for h in hits}
        assert len(hits) == 4
        assert coll.info()["points"] == 4


def test_a_foreign_folder_is_never_deleted_by_create(tmp_path):
    root = tmp_path / "edge"
    (root / "music").mkdir(parents=True)
    (root / "music" / "notes.txt").write_text("mine")
    with open_store(StoreSpec(path=root)) as s:
        with pytest.raises(StoreError, match="not a clamp2-engine collection"):
            s.ensure("music", identity(), {})
    assert (root / "music" / "notes.txt").read_text() == "mine"


def test_the_default_store_points_to_an_older_versions_collections(monkeypatch):
    from qdrant_client import QdrantClient

    home = Path(os.environ["CLAMP2_HOME"])
    QdrantClient(path=str(home / "qdrant")).close()  # an old local-mode folder (meta.json + collection/)
    (home / "qdrant" / "collection").mkdir(exist_ok=True)
    monkeypatch.delenv("CLAMP2_QDRANT_PATH", raising=False)
    monkeypatch.delenv("CLAMP2_QDRANT_URL", raising=False)
    with open_store() as s, pytest.raises(CollectionNotFoundError, match="--from-local-mode"):
        s.collection("music")


def test_a_field_only_late_in_the_collection_still_counts_as_there(store):
    coll = store.ensure("late", identity(), {})
    points = [Point(point_id(f"p{i}"), {"abc": unit_vec(i)}, {"title": f"t{i}"}) for i in range(300)]
    points.append(Point(point_id("last"), {"abc": unit_vec(999)}, {"metadata": {"mood": "calm"}}))
    coll.upsert(points)
    assert explain_empty(coll, ["mood=stormy"]) == "no piece has mood 'stormy'"  # not "no such field"
    assert explain_empty(coll, ["colour=red"]) == "no piece has a field 'colour'"


def test_listing_keeps_what_this_process_holds(tmp_path):
    with open_store(StoreSpec(path=tmp_path / "edge")) as s:
        fill(s)
        s.collection("c")
        assert s.list()[0]["points"] == 6
        assert s.backend.holds("c")
