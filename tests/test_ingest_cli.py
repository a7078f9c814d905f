"""What a newcomer meets with `ingest`, `eval --collection` and `collections drop` on a plain folder:
one meaning of counts, problems that are not forgotten, the collection's own model reused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from index_helpers import model_args

from clamp2_engine.cli import main

BOOK = """X:1
T:Good tune
M:6/8
L:1/8
K:G
GAB cde | dcB AGF | GAB cde | d3 d3 |]

X:2
T:Broken tune
M:4/4
K:Zq
@@@@ ))))( [[[ |||| :: 9999
"""


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


@pytest.fixture()
def folder(tmp_path: Path, bench_dir: Path) -> Path:
    """A plain folder: four ABC pieces, a tune book with one broken tune, and queries beside them."""
    root = tmp_path / "pieces"
    root.mkdir()
    names = sorted(p.name for p in (bench_dir / "abc").glob("*.abc"))[:4]
    queries = []
    for name in names:
        shutil.copy(bench_dir / "abc" / name, root / name)
        text = (bench_dir / "txt" / name.replace(".abc", ".txt")).read_text("utf-8").strip()
        queries.append({"summary_en": text, "filepaths": [name]})
    (root / "book.abc").write_text(BOOK, encoding="utf-8")
    queries.append({"summary_en": "a piece that is not there", "filepaths": ["missing.abc"]})
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    return root


def errors_file(home: Path, collection: str = "mine") -> Path:
    return home / "ingest" / f"{collection}.errors.jsonl"


def test_a_broken_tune_is_its_own_problem_and_counts_agree(folder, parity_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CLAMP2_HOME", str(home))
    res = run("ingest", folder, "-c", "mine", "--no-render", "--jobs", "0", *model_args(parity_dir))
    assert res.exit_code == 0, res.output
    assert "1 problem(s) with 1 input(s) logged" in res.output
    assert "failed item" not in res.output
    records = [json.loads(line) for line in errors_file(home).read_text("utf-8").splitlines()]
    assert [(r["stage"], r["unit"]) for r in records] == [("convert", "book.abc")]
    assert "tune X:2" in records[0]["reason"]
    res = run("search", "a jig", "-c", "mine", "--json", "-k", "10")
    sources = [json.loads(line)["payload"]["source"] for line in res.stdout.splitlines()]
    assert sources.count("book.abc") == 1  # X:1 was kept: the book is one good piece, not a failure


def test_a_no_op_rerun_keeps_the_problems_and_reuses_the_model(folder, parity_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CLAMP2_HOME", str(home))
    first = run(
        "ingest", folder, "-c", "mine", "--no-render", "--jobs", "0", "--json", *model_args(parity_dir)
    )
    assert first.exit_code == 0, first.output
    log = errors_file(home).read_text("utf-8")
    again = run("ingest", folder, "-c", "mine", "--no-render", "--jobs", "0", "--json")  # no --model
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["skipped"] == report["units"] == 5
    assert report["embedded"] == 0
    assert errors_file(home).read_text("utf-8") == log  # the broken tune is still listed
    dropped = run("collections", "drop", "mine", "-y")
    assert dropped.exit_code == 0
    assert not errors_file(home).exists()


def test_a_refused_ingest_leaves_the_running_ones_log_alone(folder, parity_dir, tmp_path, monkeypatch):
    """A second process on the embedded store is refused before it touches the errors file."""
    from clamp2_engine.store import open_store

    home = tmp_path / "home"
    monkeypatch.setenv("CLAMP2_HOME", str(home))
    assert (
        run("ingest", folder, "-c", "mine", "--no-render", "--jobs", "0", *model_args(parity_dir)).exit_code
        == 0
    )
    log = errors_file(home).read_text("utf-8")
    import subprocess
    import sys

    holder = open_store()
    holder.collection("mine")  # this process holds the collection, as a running ingest would
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "clamp2_engine", "ingest", str(folder), "-c", "mine", "--no-render"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        holder.close()
    assert proc.returncode == 1
    assert "in use" in proc.stderr
    assert errors_file(home).read_text("utf-8") == log


def test_eval_collection_after_a_plain_folder_ingest(folder, parity_dir, tmp_path, monkeypatch):
    """Queries name the files as ingested from a plain folder; a query naming a missing file is reported."""
    monkeypatch.setenv("CLAMP2_HOME", str(tmp_path / "home"))
    queries = folder / "queries.jsonl"
    shutil.move(tmp_path / "queries.jsonl", queries)  # beside the pieces: the folder's corpus name
    res = run("ingest", folder, "-c", "mine", "--no-render", "--jobs", "0", *model_args(parity_dir))
    assert res.exit_code == 0, res.output
    res = run("eval", "--collection", "mine", "--queries", queries, "--modality", "abc", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["pairs"] == 4
    assert out["skipped"] == 1
    assert out["MRR"] > 0
    assert "missing.abc" in out["errors"][0]["source"]
    assert "not in the collection" in out["errors"][0]["reason"]
    elsewhere = run("eval", "--collection", "mine", "--queries", queries, "--corpus", "other", "--json")
    assert elsewhere.exit_code == 1
    assert "holds no piece of corpus 'other'" in elsewhere.output
