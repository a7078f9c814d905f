"""Faults real users produce in ingest: file names that are not UTF-8, files whose conversion never ends
or takes all the memory, collections damaged between runs (verify and repair from the CLI)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import dense_midi

from clamp2_engine.cli import main

ABSURD = "X:1\nT:Absurd\nM:99999999/1\nL:1/8\nK:C\nCDEF GABc |]\n"  # 120 bytes that grow without end


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


@pytest.fixture
def folder(tmp_path: Path, bench_dir: Path) -> Path:
    root = tmp_path / "pieces"
    root.mkdir()
    for name in sorted(p.name for p in (bench_dir / "abc").glob("*.abc"))[:3]:
        shutil.copy(bench_dir / "abc" / name, root / name)
    return root


def problems(home: Path, name: str) -> list[dict]:
    path = home / "ingest" / f"{name}.errors.jsonl"
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()] if path.exists() else []


def test_a_file_name_that_is_not_utf8_is_ingested_with_the_rest(folder, tmp_path):
    latin1 = os.fsdecode(b"caf\xe9.abc")
    shutil.copy(next(folder.iterdir()), folder / latin1)
    res = run("ingest", folder, "-c", "k", "--model", "demo", "--json", "--jobs", "1")
    assert res.exit_code == 0, res.output
    report = json.loads(next(line for line in res.output.splitlines() if line.startswith("{")))
    assert (report["embedded"], report["failed"]) == (4, 0)
    found = run("search", "x", "-c", "k", "--json", "-k", "10", "--mode", "semantic")
    sources = {json.loads(line)["source"] for line in found.output.splitlines()}
    assert "caf\\xe9.abc" in sources  # shown escaped, never a lone surrogate


def test_conversions_are_bounded_in_time_and_memory(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("CLAMP2_CONVERT_MEMORY_MB", "700")
    (folder / "absurd.abc").write_text(ABSURD, encoding="utf-8")
    (folder / "dense.mid").write_bytes(dense_midi(1_000_000))  # 8 MB
    res = run(
        "ingest", folder, "-c", "k", "--model", "demo", "--json", "--convert-timeout", "5", "--jobs", "2"
    )
    assert res.exit_code == 1, res.output  # the MIDI file failed
    report = json.loads(next(line for line in res.output.splitlines() if line.startswith("{")))
    assert (report["embedded"], report["failed"]) == (4, 1)  # the absurd tune keeps its ABC, unrendered
    why = {}
    for r in problems(Path(os.environ["CLAMP2_HOME"]), "k"):
        why.setdefault(Path(r["source"]).name, r["reason"])
    for name in ("absurd.abc", "dense.mid"):
        assert "timed out after 5 s" in why[name] or "conversion limit of 700 MiB" in why[name], why


def test_verify_and_repair_ingest_again_only_what_was_lost(folder, tmp_path):
    home = Path(os.environ["CLAMP2_HOME"])
    ingest = ("ingest", folder, "-c", "k", "--model", "demo", "--jobs", "0", "--write-batch", "1")
    assert run(*ingest).exit_code == 0  # three writes: the write-ahead log keeps only the last
    res = run("collections", "verify", "k", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["ok"]
    (home / "edge" / "k" / "collection.json").unlink()
    for seg in (home / "edge" / "k" / "shards").glob("*/segments/*"):
        (seg / "version.info").unlink()  # the engine would delete the segment: its points are lost
    res = run("search", "x", "-c", "k")
    assert res.exit_code == 1
    assert "lost its record" in res.output
    assert "Traceback" not in res.output
    listed = run("collections", "list", "--json")
    assert json.loads(listed.output)[0]["status"] == "damaged"
    res = run("collections", "verify", "k")
    assert res.exit_code == 1
    assert "collections repair k" in res.output
    res = run("collections", "repair", "k", "--json")
    assert res.exit_code == 0, res.output
    outcome = json.loads(res.output.strip().splitlines()[-1])
    assert outcome["ok"]
    assert outcome["points"] == 3
    assert outcome["mended"]["record"] == "from its copy"
    assert outcome["ingested"][0]["embedded"] == 2  # what was lost, embedded again; nothing else
    assert run("collections", "verify", "k").exit_code == 0


def test_a_file_name_of_254_bytes_converts(folder, tmp_path):
    long_name = "a" * 250 + ".abc"  # legal; a temporary name made longer than it would not be
    shutil.copy(next(folder.iterdir()), tmp_path / long_name)
    src = tmp_path / "long"
    src.mkdir()
    shutil.move(tmp_path / long_name, src / long_name)
    res = run("convert", src, tmp_path / "out", "--to", "mtf", "--jobs", "1")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / ("a" * 250 + ".mtf")).is_file()


def test_a_tune_without_notes_is_a_problem_not_a_point(folder):
    (folder / "empty.abc").write_text("X:1\nT:Empty tune\nM:4/4\nK:C\n", encoding="utf-8")
    res = run("ingest", folder, "-c", "k", "--model", "demo", "--json", "--jobs", "1")
    assert res.exit_code == 1, res.output
    report = json.loads(next(line for line in res.output.splitlines() if line.startswith("{")))
    assert (report["embedded"], report["failed"], report["points"]) == (3, 1, 3)
    why = [
        r["reason"]
        for r in problems(Path(os.environ["CLAMP2_HOME"]), "k")
        if r["source"].endswith("empty.abc")
    ]
    assert any("no notes" in w for w in why), why
