"""`clamp2-engine demo`: the shipped model, music21's corpus, the embedded store and searches that make sense."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from clamp2_engine.checkpoints import REGISTRY, resolve_checkpoint, sha256_file
from clamp2_engine.cli import main
from clamp2_engine.ingest.demo import QUERIES, demo_pieces, matches

pytestmark = pytest.mark.slow  # converts and ingests ~320 pieces once for the module (~1 minute)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """One demo run shared by the module, in its own data folder."""
    home = tmp_path_factory.mktemp("demo-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAMP2_HOME", str(home))
        result = CliRunner().invoke(main, ["demo", "--json", "-q"])
        assert result.exit_code == 0, result.output
        yield home, result


@pytest.fixture()
def in_demo_home(demo_home, monkeypatch):
    monkeypatch.setenv("CLAMP2_HOME", str(demo_home[0]))
    return demo_home[0]


def search(query: str, k: int = 5) -> list[dict]:
    result = CliRunner().invoke(main, ["search", query, "-c", "demo", "-k", str(k), "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_the_demo_model_is_shipped_and_checked():
    known = REGISTRY["demo"]
    assert known.packaged
    assert known.sha256
    path = resolve_checkpoint("demo")
    assert sha256_file(path) == known.sha256
    assert path.stat().st_size < 8 * 2**20  # a few MB in the package


def test_demo_ingests_every_piece_and_prints_hits(demo_home):
    _home, result = demo_home
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    report, hits = lines[0], lines[1:]
    pieces = len(demo_pieces())
    assert report["collection"] == "demo"
    assert report["units"] == pieces
    assert report["embedded"] + report["failed"] == pieces
    assert report["failed"] <= pieces // 50
    assert len(hits) == 5 * len(QUERIES)


def test_example_searches_find_matching_pieces(in_demo_home):
    """Each fact a query names (composer, genre, meter, voices) holds for at least 4 of its top 5 hits, and
    for at least two queries the first hit matches the whole query."""
    complete = 0
    for query in QUERIES:
        hits = [h["payload"] for h in search(query.text)]
        shown = [(h.get("title"), h["metadata"]) for h in hits]
        for key, value in query.expect.items():
            assert sum(matches(h, {key: value}) for h in hits) >= 4, (query.text, key, shown)
        complete += matches(hits[0], query.expect)
    assert complete >= 2


def test_a_second_run_converts_and_embeds_nothing(in_demo_home):
    result = CliRunner().invoke(main, ["demo", "--json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[0])
    assert report["embedded"] == 0
    assert report["skipped"] == report["units"] - report["failed"]
    assert "0 converted now" in result.stderr
