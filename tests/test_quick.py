"""The fast path end to end (in `-m "not slow"`): one ingest, one CLI search, one HTTP search, with the
fixture model on a few real files."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
from click.testing import CliRunner
from helpers import Server
from index_helpers import model_args

from clamp2_engine.cli import main

FILES = ("abc/bach_bwv66_6.abc", "xml/corelli_opus3no1_1grave.xml", "midi/primitive_test01.mid")


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, parity_dir):
    """A few pieces of each kind ingested through the CLI into an embedded store."""
    root = tmp_path_factory.mktemp("quick")
    corpus = root / "pieces"
    for rel in FILES:
        src = parity_dir / "inputs" / rel
        (corpus / src.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, corpus / src.parent.name / src.name)
    store = root / "edge"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAMP2_HOME", str(root / "home"))
        args = [
            "ingest",
            corpus,
            "-c",
            "quick",
            "--qdrant-path",
            store,
            "--no-render",
            "--jobs",
            "0",
            "--json",
        ]
        res = run(*args, *model_args(parity_dir))
    assert res.exit_code == 0, res.output
    return store, json.loads(res.stdout)


def test_one_ingest(ingested):
    _store, report = ingested
    assert report["failed"] == 0
    assert report["points"] == len(FILES)


def test_one_cli_search(ingested):
    store, _report = ingested
    res = run("search", "corelli grave", "-c", "quick", "--qdrant-path", store, "--json", "-k", "3")
    assert res.exit_code == 0, res.output
    hits = [json.loads(line) for line in res.stdout.splitlines()]
    assert hits[0]["composer"] == "Arcangelo Corelli"  # by name: the hybrid default
    assert hits[0]["modality"] == "hybrid"


def test_one_http_search(ingested):
    from clamp2_engine.serve.app import create_app
    from clamp2_engine.serve.service import ServeConfig
    from clamp2_engine.store import StoreSpec

    store, _report = ingested
    server = Server(create_app(ServeConfig(StoreSpec(path=store), "quick", cache_dir=store.parent / "cache")))
    try:
        res = httpx.post(f"{server.url}/search", json={"query": "corelli grave", "k": 3}, timeout=60)
    finally:
        server.stop()
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["mode"] == "hybrid"
    assert body["hits"][0]["composer"] == "Arcangelo Corelli"
