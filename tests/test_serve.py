"""`serve` over real HTTP: uvicorn on 127.0.0.1, the fixture model, a collection of the parity inputs
(scores, ABC, MIDI, MTF); every endpoint, every client error, the API key, batching and the page."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import Server, copy_store, ingest_serve_corpus

from clamp2_engine.cli import main
from clamp2_engine.search import SearchSession
from clamp2_engine.serve.app import create_app
from clamp2_engine.serve.batching import MicroBatcher
from clamp2_engine.serve.service import ServeConfig
from clamp2_engine.store import StoreSpec

pytestmark = pytest.mark.slow  # one ingest of the parity inputs and one server, shared by the module
QUERY = "a solemn chorale for four voices"
KEY = "s3cret-serve-key"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, parity_dir):
    """A corpus with each kind of source, ingested through the CLI."""
    root = tmp_path_factory.mktemp("serve")
    store = ingest_serve_corpus(root, parity_dir)
    copy_store(store, root / "edge-page")  # the page test's own copy: one process per embedded shard
    return root, store


@pytest.fixture(scope="module")
def server(corpus):
    root, store = corpus
    config = (
        ServeConfig(  # four searches at once (a 32-core machine's default): every test runs beside others
            StoreSpec(path=store), "music", api_key=KEY, cache_dir=root / "cache", search_slots=4
        )
    )
    srv = Server(create_app(config))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=120) as c:
        yield c


def hits(res) -> list[dict]:
    assert res.status_code == 200, res.text
    return res.json()["hits"]


def test_healthz_and_collections(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["query_model"] == "torch fp32"  # what encodes text queries (CLAMP2_DTYPE=fp32 in tests)
    [row] = client.get("/collections").json()["collections"]
    assert row["name"] == "music"
    assert row["points"] == 28
    info = client.get("/collections/music").json()
    assert info["points"] == 28
    assert {"value": "Arcangelo Corelli", "count": 1} in info["facets"]["composer"]  # display values
    assert client.get("/collections/nope").status_code == 404


def test_text_search_and_the_query_vector(client, text_model, corpus):
    found = hits(client.post("/search", json={"query": QUERY, "k": 5}))
    assert [h["rank"] for h in found] == [1, 2, 3, 4, 5]
    assert set(found[0]) >= {"rank", "id", "score", "modality", "title", "composer", "source", "payload"}
    model = text_model
    vec = client.post("/embed/text", json={"texts": [QUERY, "ein Choral"]}).json()
    assert len(vec["vectors"]) == 2
    assert vec["model"]["name"] == "clamp2.pth"
    ref = model.encode_text(QUERY)
    got = np.asarray(vec["vectors"][0])
    assert float(ref @ got / np.linalg.norm(ref) / np.linalg.norm(got)) > 0.99999
    paged = hits(client.post("/search", json={"query": QUERY, "k": 2, "offset": 2}))
    assert [h["id"] for h in paged] == [h["id"] for h in found[2:4]]


def test_modes_and_word_filters(client):
    """Hybrid is the default; a title's words find its piece; modes and word filters as in the CLI."""
    titled = hits(client.post("/search", json={"query": QUERY, "k": 28, "mode": "semantic"}))
    target = next(h for h in titled if h["title"] and len(h["title"].split()) >= 2)
    words = target["title"].lower()
    for mode in ("hybrid", "lexical"):
        res = client.post("/search", json={"query": words, "k": 3, "mode": mode})
        assert res.json()["mode"] == mode
        assert res.json()["hits"][0]["title"] == target["title"]
    semantic = client.post("/search", json={"query": QUERY, "k": 5, "mode": "semantic"}).json()
    assert semantic["mode"] == "semantic"
    assert {h["modality"] for h in semantic["hits"]} <= {"abc", "mtf"}
    corelli = hits(client.post("/search", json={"query": QUERY, "filters": ["composer=corelli"]}))
    assert corelli
    assert all(h["composer"] == "Arcangelo Corelli" for h in corelli)


def test_like_unlike_filters_and_diverse(client):
    first = hits(client.post("/search", json={"query": QUERY, "k": 3}))
    like = hits(client.post("/search", json={"like": [first[0]["id"]], "k": 5}))
    assert len(like) == 5
    assert first[0]["id"] not in {h["id"] for h in like}
    both = hits(
        client.post("/search", json={"query": QUERY, "like": [first[0]["id"]], "unlike": [like[0]["id"]]})
    )
    assert like[0]["id"] not in {h["id"] for h in both}
    corelli = hits(client.post("/search", json={"query": QUERY, "filters": ["composer=ARCANGELO CORELLI"]}))
    assert corelli
    assert all(h["composer"] == "Arcangelo Corelli" for h in corelli)
    res = client.post("/search", json={"query": QUERY, "filters": ["composer=Corelly"]})
    assert res.json()["hits"] == []
    assert "no piece has composer 'corelly'" in res.json()["why"]
    assert len(hits(client.post("/search", json={"query": QUERY, "k": 10, "diverse": True}))) == 10


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"query": "  "}, 400, "give a query"),
        ({}, 400, "give a query"),
        ({"query": QUERY, "k": 0}, 422, "k:"),
        ({"query": QUERY, "k": 1001}, 422, "k:"),
        ({"query": QUERY, "modality": "midi"}, 422, "modality"),
        ({"query": QUERY, "filters": ["composer"]}, 400, "bad filter"),
        ({"query": QUERY, "collection": "nope"}, 404, "no collection 'nope'"),
        ({"like": ["not-an-id"]}, 422, "not a point id"),
        ({"like": ["00000000-0000-0000-0000-000000000000"]}, 422, "no piece"),
        ({"query": QUERY, "like": ["00000000-0000-0000-0000-000000000000"], "diverse": True}, 400, "diverse"),
        ({"query": "x" * 5000}, 422, "query"),
        ({"query": QUERY, "mode": "fuzzy"}, 422, "mode"),
        ({"query": QUERY, "lexical_weight": -1}, 422, "lexical_weight"),
        ({"query": "\u0000"}, 400, "give a query"),
        ({"query": QUERY, "filters": ["composer=" + "x" * 300]}, 400, "too long"),
    ],
)
def test_search_errors_are_one_line_4xx(client, body, status, message):
    res = client.post("/search", json=body)
    assert res.status_code == status
    assert message in res.json()["error"]
    assert "\n" not in res.json()["error"]


def test_malformed_and_oversized_bodies(client, server):
    res = client.post("/search", content=b"{not json", headers={"Content-Type": "application/json"})
    assert res.status_code == 422
    assert "error" in res.json()
    res = client.post("/search", content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
    assert res.json() == {"error": "the request body could not be read (JSON in UTF-8, or a multipart form)"}
    res = client.post("/search", content=b"x" * (17 * 2**20), headers={"Content-Type": "application/json"})
    assert res.status_code == 413
    assert client.post("/embed/text", json={"texts": []}).status_code == 422
    assert client.post("/embed/text", json={"texts": ["x"] * 300}).status_code == 422
    assert client.post("/embed/text", json={"texts": ["  \n"]}).status_code == 422


def test_a_chunked_body_over_the_limit_is_refused_as_it_is_read(client):
    def chunks():  # no Content-Length: the limit must count what is read
        yield b'{"query": "'
        for _ in range(20):
            yield b"x" * 2**20
        yield b'"}'

    res = client.post("/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert res.status_code == 413
    assert "over 16 MiB" in res.json()["error"]
    assert client.get("/collections").status_code == 200  # the server goes on


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/search", {"query": "x", "collection": "../../etc"}),
        ("post", "/search", {"query": "x", "collection": "a/b"}),
        ("post", "/search", {"query": "x", "collection": ".."}),
        ("get", "/collections/%2e%2e", None),
        ("get", "/pieces/00000000-0000-0000-0000-000000000000?collection=../../etc", None),
    ],
)
def test_a_bad_collection_name_is_a_4xx_sentence(client, caplog, method, path, body):
    res = client.post(path, json=body) if method == "post" else client.get(path)
    assert res.status_code in (404, 422), res.text
    assert "collection name" in res.json()["error"] or "no collection" in res.json()["error"]
    assert "Traceback" not in caplog.text
    long = client.post("/search", json={"query": "x", "collection": "y" * 10_000})
    assert long.status_code == 422
    assert len(long.text) < 400  # the name is not echoed whole


@pytest.mark.parametrize(
    "body", [{"query": "x", "k": "5"}, {"query": "x", "k": True}, {"query": "x", "diverse": "yes"}]
)
def test_types_are_not_coerced(client, body):
    assert client.post("/search", json=body).status_code == 422


def test_head_livez_and_metrics(client):
    for path in ("/healthz", "/livez", "/collections", "/"):
        res = client.head(path)
        assert res.status_code == 200, path
        assert res.content == b""
    client.post("/search", json={"query": QUERY, "k": 2})
    text = client.get("/metrics").text
    assert 'clamp2_requests_total{method="POST",route="/search",status="200"}' in text
    assert "clamp2_text_batch_size_bucket" in text
    assert "clamp2_request_seconds_bucket" in text


def test_the_port_answers_while_the_model_loads(corpus, tmp_path):
    """Readiness: /healthz is 503 "starting" and the API 503 until the model is ready, then 200; a model
    that cannot load leaves the server up, saying why."""
    import threading

    root, store = corpus
    gate = threading.Event()

    def slow_loader(options, tower):  # the library's loader, held until the test lets it go
        from clamp2_engine.search.models import load_tower

        gate.wait(60)
        return load_tower(options, tower)

    copy = tmp_path / "edge"
    copy_store(root / "edge-page", copy)
    config = ServeConfig(StoreSpec(path=copy), "music", loader=slow_loader, cache_dir=tmp_path / "cache")
    page = Server(create_app(config), ready=False)
    try:
        res = httpx.get(f"{page.url}/healthz")
        assert res.status_code == 503
        assert res.json()["status"] == "starting"
        busy = httpx.post(f"{page.url}/search", json={"query": QUERY})
        assert busy.status_code == 503
        assert "starting" in busy.json()["error"]
        gate.set()
        page.wait_ready()
        assert httpx.post(f"{page.url}/search", json={"query": QUERY}).status_code == 200
    finally:
        gate.set()
        page.stop()

    def broken_loader(options, tower):
        from clamp2_engine.checkpoints import ModelNotFoundError

        raise ModelNotFoundError("no checkpoint file at '/gone.pth'")

    config = ServeConfig(StoreSpec(path=copy), "music", loader=broken_loader, cache_dir=tmp_path / "cache")
    broken = Server(create_app(config), ready=False)
    try:
        deadline = time.monotonic() + 60
        while (health := httpx.get(f"{broken.url}/healthz")).json()["status"] == "starting":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert health.status_code == 503
        assert health.json() == {
            "status": "failed",
            "collection": "music",
            "error": "no checkpoint file at '/gone.pth'",
        }
        res = httpx.post(f"{broken.url}/search", json={"query": QUERY})
        assert res.status_code == 503
        assert "cannot serve: no checkpoint file" in res.json()["error"]
        assert httpx.get(f"{broken.url}/livez").status_code == 200
    finally:
        broken.stop()


def test_piece_ids_are_echoed_canonical(client):
    hit = hits(client.post("/search", json={"query": QUERY, "k": 1}))[0]
    res = client.get(f"/pieces/{hit['id'].upper()}")
    assert res.status_code == 200
    assert res.json()["id"] == hit["id"]
    assert client.get("/pieces/not-a-uuid").status_code == 404


def test_search_and_embed_by_uploaded_music(client, parity_dir):
    midi = parity_dir / "inputs" / "midi" / "render_bach_bwv66_6.mid"
    found = hits(
        client.post("/search/music", files={"file": (midi.name, midi.read_bytes())}, data={"k": "3"})
    )
    assert len(found) == 3
    xml = parity_dir / "inputs" / "xml" / "corelli_opus3no1_1grave.xml"
    res = client.post(
        "/search/music", files={"file": (xml.name, xml.read_bytes())}, data={"modality": "abc", "k": "1"}
    )
    top = hits(res)[0]  # the same piece (its .xml or its .abc copy), found by its own score
    assert "corelli_opus3no1_1grave" in top["source"]
    assert top["score"] > 0.999
    vec = client.post("/embed/music", files={"file": (midi.name, midi.read_bytes())}).json()
    assert len(vec["vectors"]) == 1
    assert len(vec["vectors"][0]) == vec["model"]["dim"]


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("junk.mid", os.urandom(2000), 422, "junk.mid"),
        ("broken.xml", b"<score-partwise><part", 422, "broken.xml"),
        ("empty.mid", b"", 400, "empty"),
        ("noname", b"MThd", 415, "suffix"),
        ("huge.mid", b"\0" * (8 * 2**20 + 10), 413, "MiB"),
    ],
)
def test_bad_uploads(client, name, data, status, message):
    res = client.post("/search/music", files={"file": (name, data)})
    assert res.status_code == status, res.text
    assert message in res.json()["error"], res.text
    assert "Error:" not in res.json()["error"]  # no exception class, file or line for the client
    assert "(at " not in res.json()["error"]


def test_pieces_scores_and_midi(client):
    everything = hits(client.post("/search", json={"query": QUERY, "k": 28}))
    by_source = {h["source"]: h["id"] for h in everything}
    piece = client.get(f"/pieces/{by_source['abc/bach_bwv66_6.abc']}").json()
    assert piece["payload"]["source"] == "abc/bach_bwv66_6.abc"
    assert "K:F#min" in piece["abc"]
    assert "keys" not in piece["payload"]
    for source in (
        "abc/bach_bwv66_6.abc",
        "xml/corelli_opus3no1_1grave.xml",
        "midi/primitive_test01.mid",
        "mtf/" + next(s for s in by_source if s.startswith("mtf/")).split("/", 1)[1],
    ):
        res = client.get(f"/pieces/{by_source[source]}/score.svg")
        assert res.status_code == 200, (source, res.text)
        assert res.headers["content-type"].startswith("image/svg+xml"), source
        assert b"<svg" in res.content[:2000]
    res = client.get(f"/pieces/{by_source['midi/primitive_test01.mid']}/midi")
    assert res.status_code == 200
    assert res.content.startswith(b"MThd")
    assert "attachment" in res.headers["content-disposition"]
    res = client.get(
        f"/pieces/{by_source['mtf/' + next(s for s in by_source if s.startswith('mtf/')).split('/', 1)[1]]}/midi"
    )
    assert res.content.startswith(b"MThd")
    for bad in ("00000000-0000-0000-0000-000000000000", "not-an-id"):
        for suffix in ("", "/score.svg", "/midi"):
            res = client.get(f"/pieces/{bad}{suffix}")
            assert res.status_code == 404
            assert "no piece" in res.json()["error"] or "not a point id" in res.json()["error"]


def test_api_key_is_required_and_never_logged(server, caplog):
    caplog.set_level(logging.INFO)
    with httpx.Client(base_url=server.url, timeout=60) as anonymous:
        assert anonymous.get("/").status_code == 200  # the page itself carries no data
        assert anonymous.get("/healthz").status_code == 200  # probes need no key (--public-health)
        assert anonymous.get("/livez").status_code == 200
        for path in ("/collections", "/metrics"):
            res = anonymous.get(path)
            assert res.status_code == 401
            assert "API key" in res.json()["error"]
        assert anonymous.get("/collections", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert anonymous.get("/collections", headers={"Authorization": f"bearer {KEY}"}).status_code == 200
        assert anonymous.get("/collections", headers={"Authorization": KEY}).status_code == 401  # no scheme
        assert anonymous.get("/collections", headers={"X-API-Key": "wrong"}).status_code == 401
    assert KEY not in caplog.text
    assert "Traceback" not in caplog.text


def test_concurrent_queries_are_encoded_together(text_model):
    model = text_model
    started, gate = threading.Event(), threading.Event()

    def encode(texts: list[str]) -> np.ndarray:
        started.set()
        gate.wait(60)  # the first pass holds until every request is queued
        return np.atleast_2d(model.encode_text(texts))

    batcher = MicroBatcher(encode, max_wait=0.05)

    async def many():
        pending = asyncio.gather(*(batcher.encode([f"query {i}"]) for i in range(16)))
        await asyncio.to_thread(started.wait, 60)  # meanwhile the loop queued all 16
        gate.set()
        return await pending

    try:
        vectors = asyncio.run(many())
    finally:
        gate.set()
        batcher.close()
    assert len(vectors) == 16
    assert all(v.shape == (1, vectors[0].shape[1]) for v in vectors)
    assert batcher.batches <= 2  # the first pass, then the 15 queued behind it together
    assert np.allclose(vectors[3][0], model.encode_text("query 3"), atol=1e-5)


def test_searches_run_side_by_side_and_answer_as_one_at_a_time(server, client, corpus, monkeypatch):
    _root, store = corpus
    configs = [json.loads(p.read_text()) for p in (store / "music" / "shards").glob("*/edge_config.json")]
    assert configs
    assert {c["max_search_threads"] for c in configs} == {1}  # serve's --search-threads
    queries = (QUERY, "ein Choral", "Corelli", "a lively dance")
    bodies = [{"query": q, "k": 5, "mode": m} for q in queries for m in ("semantic", "hybrid", "lexical")]
    bodies.append({"like": [hits(client.post("/search", json=bodies[0]))[0]["id"]], "k": 5})

    def ranked(body: dict) -> list[dict]:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=120) as c:
            return hits(c.post("/search", json=body))

    alone = [ranked(b) for b in bodies]
    running, peak, beside = [0], [0], threading.Event()
    count, find = threading.Lock(), SearchSession.find

    def watched(session, *args, **kwargs):
        with count:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            if running[0] > 1:
                beside.set()
        try:
            if not beside.wait(30):  # until a second search runs beside this one
                beside.set()  # none did: the others need not wait as well
            return find(session, *args, **kwargs)
        finally:
            with count:
                running[0] -= 1

    monkeypatch.setattr(SearchSession, "find", watched)
    with ThreadPoolExecutor(2 * len(bodies)) as pool:
        together = list(pool.map(ranked, bodies * 2))
    assert 2 <= peak[0] <= 4  # the server's search slots
    for got, want in zip(together, alone * 2, strict=True):  # texts batched otherwise: scores within fp32
        assert [h["id"] for h in got] == [h["id"] for h in want]
        assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want], abs=1e-4)


def test_client_errors_leave_no_traceback_in_the_log(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.post("/search", content=b"\xff\xfe", headers={"Content-Type": "application/json"})
    client.post("/search/music", files={"file": ("x.mid", b"\0\1\2")})
    client.post("/search", json={"query": "x", "filters": ["=="]})
    client.get("/pieces/nope/score.svg")
    client.get("/collections/%2F..%2Fetc")
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_serve_command_refuses_bad_options_before_starting(corpus, monkeypatch):
    _root, store = corpus
    monkeypatch.delenv("NOPE_KEY_VAR", raising=False)
    base = ["serve", "-c", "music", "--qdrant-path", str(store)]
    res = CliRunner().invoke(main, [*base, "--api-key-env", "NOPE_KEY_VAR"])
    assert res.exit_code == 1
    assert "$NOPE_KEY_VAR is not set" in res.output
    res = CliRunner().invoke(main, [*base, "--corpus-root", "pieces"])
    assert res.exit_code == 2
    assert "NAME=FOLDER" in res.output
    res = CliRunner().invoke(main, [*base, "--search-threads", "-1"])
    assert res.exit_code == 2
    assert "--search-threads" in res.output


def dump_dom(chromium: str, url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran (headless Chromium, a fresh profile)."""
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout


@pytest.fixture(scope="module")
def page(server):
    """Headless Chromium, and a keyless server on its own copy of the collection (the page keeps the API
    key in localStorage; a fresh profile has none)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs chromium (.ci/run): it must be there")
        pytest.skip("no chromium on this machine")
    root = Path(server.server.config.app.state.service.config.cache_dir).parent
    config = ServeConfig(StoreSpec(path=root / "edge-page"), "music", cache_dir=root / "cache-page")
    srv = Server(create_app(config))
    yield chromium, srv.url
    srv.stop()


def test_the_page_in_a_real_browser(page, tmp_path):
    """Headless Chromium opens /?q=... and result cards with engraved scores appear."""
    chromium, base = page
    dom = dump_dom(chromium, f"{base}/?" + str(httpx.QueryParams({"q": QUERY})), tmp_path / "profile")
    assert dom.count('class="card"') >= 5, dom[-2000:]
    cards = dom.split('class="card"')[1:]
    assert sum("<svg" in c for c in cards) >= 3  # engraved scores (and piano rolls) inside the cards
    assert '<link rel="icon" href="/favicon.ico"' in dom
    assert httpx.get(f"{base}/favicon.ico").headers["content-type"] == "image/svg+xml"


def test_the_url_is_the_state(page, client, tmp_path):
    """A link with a query, filters, a mode and "like" reproduces its results when opened (or reloaded);
    the composer list shows display names with counts."""
    chromium, base = page
    first = hits(client.post("/search", json={"query": QUERY, "k": 12}))
    composer = next(h["composer"] for h in first if h["composer"])
    same = hits(client.post("/search", json={"query": QUERY, "k": 12, "filters": [f"composer=={composer}"]}))
    url = f"{base}/?" + str(httpx.QueryParams({"q": QUERY, "composer": composer, "mode": "semantic"}))
    dom = dump_dom(chromium, url, tmp_path / "one")
    ids = [c.split('"', 1)[0] for c in dom.split('data-id="')[1:]]
    semantic = hits(
        client.post(
            "/search",
            json={"query": QUERY, "k": 12, "mode": "semantic", "filters": [f"composer=={composer}"]},
        )
    )
    assert ids == [h["id"] for h in semantic]
    assert len(same) >= 1
    assert f'<option value="{composer}">{composer} (' in dom  # a display name and its count
    like = first[0]["id"]
    dom = dump_dom(chromium, f"{base}/?like={like}", tmp_path / "two")
    ids = [c.split('"', 1)[0] for c in dom.split('data-id="')[1:]]
    assert ids == [h["id"] for h in hits(client.post("/search", json={"like": [like], "k": 12}))]
    assert "pieces like" in dom


def test_openapi_documents_every_answer(client):
    spec = client.get("/openapi.json").json()
    ok = spec["paths"]["/search"]["post"]["responses"]
    assert ok["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SearchResponse")
    assert ok["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    hit = spec["components"]["schemas"]["Hit"]["properties"]
    assert {"rank", "score", "id", "modality", "title", "composer", "payload"} <= set(hit)
    for path in ("/healthz", "/embed/text", "/collections", "/collections/{name}", "/pieces/{pid}"):
        method = next(iter(spec["paths"][path].values()))
        assert "$ref" in method["responses"]["200"]["content"]["application/json"]["schema"], path


def test_the_api_docs_load_no_asset_from_another_host(client):
    import re

    for page in ("/docs", "/redoc"):
        res = client.get(page)
        assert res.status_code == 200
        html = res.text
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
        urls += re.findall(r"""url:\s*["']([^"']+)["']""", html) + re.findall(
            r"""spec-url=["']([^"']+)["']""", html
        )
        assert urls, page
        assert [u for u in urls if re.match(r"^(https?:)?//", u)] == [], page
        for url in urls:
            assert client.get(url).status_code == 200, (page, url)
    assert "clamp2-engine" in client.get("/openapi.json").json()["info"]["title"]
