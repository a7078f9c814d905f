"""Batch conversion: bad input never stops a batch, names mirror the source, reruns skip, workers are
killed when they hang."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from clamp2_engine.cli import main
from clamp2_engine.music.convert import convert_tree
from clamp2_engine.workers import run_tasks

TUNE_BOOK = """%abc-2.1
% a book with two tunes
X:1
T:First
M:3/4
L:1/8
K:G
GA B2 d2 | e2 d2 B2 | A2 G2 E2 | D6 |]

X:7
T:Second
M:2/4
L:1/16
K:D
d2f2 a2f2 | g2e2 c4 | d8 |]
"""

LATIN1_TUNE = "X:1\nT:Caf\u00e9 \u00e0 la cr\u00e8me\nM:4/4\nL:1/8\nK:C\nCDEF GABc | c8 |]\n"


def _bad_and_good(folder: Path, parity: Path) -> None:
    """A folder with good files and every kind of bad input beside them."""
    rng = random.Random(0)
    inputs = parity / "inputs"
    folder.mkdir(parents=True)
    shutil.copy(inputs / "xml" / "corelli_opus3no1_1grave.xml", folder / "corelli.xml")
    shutil.copy(inputs / "midi" / "primitive_test05.mid", folder / "good.mid")
    (folder / "book.abc").write_text(TUNE_BOOK, encoding="utf-8")
    sub = folder / "sub"
    sub.mkdir()
    (sub / "latin.abc").write_bytes(LATIN1_TUNE.encode("cp1252"))
    midi = (inputs / "midi" / "render_bach_bwv66_6.mid").read_bytes()
    (folder / "truncated.mid").write_bytes(midi[: len(midi) // 2])
    (folder / "random.mid").write_bytes(rng.randbytes(3000))
    (folder / "header_then_junk.mid").write_bytes(midi[:14] + rng.randbytes(500))
    (folder / "empty.mid").write_bytes(b"")
    (folder / "malformed.xml").write_text(
        "<?xml version='1.0'?><score-partwise><part-list><score-part", encoding="utf-8"
    )
    (folder / "empty.xml").write_bytes(b"")
    (folder / "junk.abc").write_bytes(bytes(rng.randrange(256) for _ in range(4000)))
    with zipfile.ZipFile(folder / "notascore.mxl", "w") as zf:
        zf.writestr("readme.txt", "this zip holds no score")


BAD_FOR_ABC = {
    "malformed.xml": "malformed XML",
    "empty.xml": "empty file",
    "junk.abc": "binary",
    "notascore.mxl": "zip archive without a MusicXML score",
}
BAD_FOR_MTF = {
    "truncated.mid": "truncated",
    "random.mid": "MThd",
    "header_then_junk.mid": "",
    "empty.mid": "empty",
    **BAD_FOR_ABC,
}


@pytest.fixture(scope="module")
def batch_src(tmp_path_factory, parity_dir: Path) -> Path:
    src = tmp_path_factory.mktemp("batch") / "src"
    _bad_and_good(src, parity_dir)
    return src


@pytest.fixture(scope="module")
def abc_run(batch_src: Path, tmp_path_factory):
    dst = tmp_path_factory.mktemp("abc-out")
    return dst, convert_tree(batch_src, dst, "abc", jobs=2)


@pytest.fixture(scope="module")
def mtf_run(batch_src: Path, tmp_path_factory):
    dst = tmp_path_factory.mktemp("mtf-out")
    return dst, convert_tree(batch_src, dst, "mtf", jobs=1)


def _errors(dst: Path) -> dict[str, dict]:
    lines = (dst / "errors.jsonl").read_text(encoding="utf-8").splitlines()
    return {Path(rec["source"]).name: rec for rec in map(json.loads, lines)}


@pytest.mark.parametrize(
    ("run", "name", "reason"),
    [("abc_run", name, reason) for name, reason in sorted(BAD_FOR_ABC.items())]
    + [("mtf_run", name, reason) for name, reason in sorted(BAD_FOR_MTF.items())],
)
def test_bad_input_is_reported(request, run: str, name: str, reason: str) -> None:
    dst, _ = request.getfixturevalue(run)
    record = _errors(dst)[name]
    assert record["stage"]
    assert record["reason"]
    assert reason in record["reason"]


def test_good_files_beside_bad_ones_convert_to_abc(abc_run, parity_dir: Path) -> None:
    dst, report = abc_run
    expected = (parity_dir / "inputs" / "abc" / "corelli_opus3no1_1grave.abc").read_bytes()
    assert (dst / "corelli.abc").read_bytes() == expected
    assert sorted(p.name for p in dst.glob("book_*.abc")) == ["book_1.abc", "book_7.abc"]
    latin = (dst / "sub" / "latin.abc").read_text(encoding="utf-8")
    assert latin.startswith("L:1/8")
    assert "[V:1]" in latin
    counts = report.summary.counts
    assert counts["converted"] == 4
    assert counts["failed"] == len(BAD_FOR_ABC) == report.errors.count
    assert counts["decoded as cp1252"] == 1
    assert report.by_kind["abc"]["converted"] == 3
    assert report.by_kind["musicxml"]["converted"] == 1


def test_good_files_beside_bad_ones_convert_to_mtf(mtf_run, parity_dir: Path) -> None:
    dst, report = mtf_run
    assert (dst / "good.mtf").read_bytes() == (
        parity_dir / "inputs" / "mtf" / "primitive_test05.mtf"
    ).read_bytes()
    for name in ("corelli.mtf", "book_1.mtf", "book_7.mtf", "sub/latin.mtf"):  # rendered scores
        assert (dst / name).read_text(encoding="utf-8").startswith("ticks_per_beat ")
    assert report.summary.counts["failed"] == len(BAD_FOR_MTF)
    assert report.summary.counts["rendered with Verovio"] == 1  # the MusicXML
    assert report.summary.counts["rendered with music21"] == 3  # ABC tunes


def test_second_run_skips_and_overwrite_redoes(tmp_path: Path, parity_dir: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(parity_dir / "inputs" / "midi" / "primitive_test01.mid", src / "a.mid")
    (src / "bad.mid").write_bytes(b"MThd")
    dst = tmp_path / "dst"
    first = convert_tree(src, dst, "mtf", jobs=0)
    assert first.summary.counts["converted"] == 1
    assert first.errors.count == 1
    before = (dst / "a.mtf").stat().st_mtime_ns
    second = convert_tree(src, dst, "mtf", jobs=0)
    assert second.summary.counts["skipped (output exists)"] == 1
    assert second.summary.counts["converted"] == 0
    assert second.errors.count == 1
    assert len((dst / "errors.jsonl").read_text().splitlines()) == 1  # rewritten, not appended
    assert (dst / "a.mtf").stat().st_mtime_ns == before
    third = convert_tree(src, dst, "mtf", jobs=0, overwrite=True)
    assert third.summary.counts["converted"] == 1


def test_same_stem_sources_get_distinct_names(tmp_path: Path, parity_dir: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(parity_dir / "inputs" / "midi" / "primitive_test01.mid", src / "piece.mid")
    shutil.copy(parity_dir / "inputs" / "xml" / "corelli_opus3no1_1grave.xml", src / "piece.xml")
    report = convert_tree(src, tmp_path / "dst", "mtf", jobs=0)
    assert report.summary.counts["converted"] == 2
    assert sorted(p.name for p in (tmp_path / "dst").glob("*.mtf")) == ["piece.mtf", "piece_xml.mtf"]
    assert (tmp_path / "dst" / "piece.mtf").read_text() == (
        parity_dir / "inputs" / "mtf" / "primitive_test01.mtf"
    ).read_text()


def test_time_limit_is_enforced_with_one_job(tmp_path: Path, parity_dir: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(parity_dir / "inputs" / "xml" / "corelli_opus3no1_1grave.xml", src / "slow.xml")
    report = convert_tree(src, tmp_path / "dst", "abc", jobs=1, timeout=1e-6)
    [record] = _errors(tmp_path / "dst").values()
    assert record["stage"] == "timeout"
    assert "timed out" in record["reason"]
    assert report.summary.counts["failed"] == 1


def test_pool_kills_a_hung_worker_and_goes_on() -> None:
    outcomes = list(run_tasks(time.sleep, [60, 0.01, 0.02], jobs=1, timeout=1.0))
    by_task = {o.task: o for o in outcomes}
    assert not by_task[60].ok
    assert "timed out" in by_task[60].error
    assert by_task[0.01].ok
    assert by_task[0.02].ok


def test_pool_reports_a_dead_worker() -> None:
    [outcome] = run_tasks(os._exit, [3], jobs=1, timeout=30)
    assert not outcome.ok
    assert "exit code 3" in outcome.error


def test_pool_reports_exceptions_and_keeps_the_worker() -> None:
    outcomes = list(run_tasks(int, ["12", "twelve", "7"], jobs=1))
    assert [o.ok for o in outcomes] == [True, False, True]
    assert "ValueError" in outcomes[1].error


def test_cli_convert_json_and_rerun(tmp_path: Path, parity_dir: Path) -> None:
    src = parity_dir / "inputs" / "mtf"
    runner = CliRunner()
    result = runner.invoke(
        main, ["convert", str(src), str(tmp_path / "out"), "--to", "midi", "--json", "-j", "0"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["converted"] == len(list(src.glob("*.mtf")))
    assert summary["errors"] == 0
    again = runner.invoke(main, ["convert", str(src), str(tmp_path / "out"), "--to", "midi", "--json"])
    assert json.loads(again.output)["skipped (output exists)"] == summary["converted"]


def test_cli_refuses_dst_inside_src_for_abc(tmp_path: Path) -> None:
    (tmp_path / "a.abc").write_text(TUNE_BOOK)
    result = CliRunner().invoke(main, ["convert", str(tmp_path), str(tmp_path / "out"), "--to", "abc"])
    assert result.exit_code != 0
    assert "inside SRC" in result.output


def test_cli_full_mtf_keeps_text_messages(tmp_path: Path, parity_dir: Path) -> None:
    src = parity_dir / "inputs" / "midi" / "primitive_test01.mid"
    result = CliRunner().invoke(
        main, ["convert", str(src), str(tmp_path), "--to", "mtf", "--full", "-q", "-j", "0"]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "primitive_test01.mtf").read_text()
    assert "track_name" in text
    assert text != (parity_dir / "inputs" / "mtf" / "primitive_test01.mtf").read_text()
