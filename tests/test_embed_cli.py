"""`clamp2-engine embed` as a batch tool: bad inputs reported per file, resumable, mirrored outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from clamp2_engine.cli import main


@pytest.fixture()
def corpus(parity_dir, tmp_path):
    src = tmp_path / "corpus"
    (src / "music" / "deep").mkdir(parents=True)
    shutil.copy(parity_dir / "inputs" / "abc" / "bach_bwv66_6.abc", src / "music" / "bach.abc")
    shutil.copy(parity_dir / "inputs" / "mtf" / "primitive_test01.mtf", src / "music" / "deep" / "p1.mtf")
    shutil.copy(parity_dir / "inputs" / "txt" / "en_jig.txt", src / "en_jig.txt")
    (src / "empty.abc").write_bytes(b"")
    (src / "junk.abc").write_bytes(bytes(range(256)) * 4)
    (src / "latin1.txt").write_bytes("Chanson très ancienne, für Gitarre".encode("latin-1"))
    (src / "blank.txt").write_text("\n\n\n", encoding="utf-8")
    (src / "nobars.abc").write_text("just words with no bar lines\n", encoding="utf-8")
    (src / "notes.md").write_text("ignored", encoding="utf-8")
    return src


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def model_args(parity_dir):
    return [
        "--model",
        str(parity_dir / "checkpoints" / "clamp2.pth"),
        "--text-model",
        str(parity_dir / "text_model"),
        "--device",
        "cpu",
    ]


def test_bad_inputs_are_reported_and_the_batch_goes_on(parity_dir, corpus, tmp_path):
    dst = tmp_path / "out"
    result = run(["embed", str(corpus), str(dst), "--pooled", "--json", *model_args(parity_dir)])
    assert result.exit_code == 1, result.output  # some items failed (the documented exit status)
    summary = json.loads(result.output.strip().splitlines()[-1])
    again = run(
        ["embed", str(corpus), str(dst), "--pooled", "--allow-failures", "-q", *model_args(parity_dir)]
    )
    assert again.exit_code == 0, again.output
    assert summary["embedded"] == 3
    assert summary["failed"] == 5
    assert np.load(dst / "music" / "bach.npy").shape == (1, 128)
    assert np.load(dst / "music" / "deep" / "p1.npy").shape == (1, 128)
    assert np.load(dst / "en_jig.npy").shape == (1, 128)
    errors = {
        json.loads(line)["source"].rsplit("/", 1)[-1]: json.loads(line)
        for line in (dst / "errors.jsonl").read_text().splitlines()
    }
    assert set(errors) == {"empty.abc", "junk.abc", "latin1.txt", "blank.txt", "nobars.abc"}
    assert "empty" in errors["empty.abc"]["reason"]
    assert "binary" in errors["junk.abc"]["reason"]
    assert "UTF-8" in errors["latin1.txt"]["reason"]
    assert all(e["stage"] == "read" for e in errors.values())


def test_second_run_skips_existing_and_overwrite_recomputes(parity_dir, corpus, tmp_path):
    dst = tmp_path / "out"
    run(["embed", str(corpus), str(dst), "--quiet", *model_args(parity_dir)])
    before = (dst / "music" / "bach.npy").stat().st_mtime_ns
    again = json.loads(
        run(["embed", str(corpus), str(dst), "--json", *model_args(parity_dir)]).output.splitlines()[-1]
    )
    assert again.get("embedded", 0) == 0
    assert again["skipped (exists)"] == 3
    assert (dst / "music" / "bach.npy").stat().st_mtime_ns == before
    over = json.loads(
        run(
            ["embed", str(corpus), str(dst), "--json", "--overwrite", *model_args(parity_dir)]
        ).output.splitlines()[-1]
    )
    assert over["embedded"] == 3
    raw = np.load(dst / "music" / "bach.npy")
    assert raw.ndim == 3
    assert raw.shape[0] == 1
    assert raw.shape[2] == 128


def test_single_file_source_and_m3_kind(parity_dir, tmp_path):
    src = parity_dir / "inputs" / "abc" / "bach_bwv66_6.abc"
    dst = tmp_path / "one"
    result = run(
        [
            "embed",
            str(src),
            str(dst),
            "--model",
            str(parity_dir / "checkpoints" / "m3.pth"),
            "--kind",
            "m3",
            "--quiet",
        ]
    )
    assert result.exit_code == 0, result.output
    exp = np.load(parity_dir / "expected" / "m3" / "abc" / "bach_bwv66_6.npy")
    assert np.load(dst / "bach_bwv66_6.npy").shape == exp.shape
    bad = CliRunner().invoke(
        main,
        [
            "embed",
            str(src),
            str(tmp_path / "x"),
            "--model",
            str(parity_dir / "checkpoints" / "m3.pth"),
            "--pooled",
        ],
    )
    assert bad.exit_code != 0
    assert "no projection" in bad.output
    wrong = CliRunner().invoke(
        main,
        [
            "embed",
            str(src),
            str(tmp_path / "y"),
            "--model",
            str(parity_dir / "checkpoints" / "m3.pth"),
            "--kind",
            "clamp2",
        ],
    )
    assert wrong.exit_code != 0
    assert "m3 checkpoint" in wrong.output


def test_files_sharing_a_stem_are_all_embedded(parity_dir, tmp_path):
    src = tmp_path / "c"
    src.mkdir()
    shutil.copy(parity_dir / "inputs" / "abc" / "bach_bwv66_6.abc", src / "piece.abc")
    shutil.copy(parity_dir / "inputs" / "mtf" / "primitive_test01.mtf", src / "piece.mtf")
    shutil.copy(parity_dir / "inputs" / "abc" / "bach_bwv66_6.abc", src / "other.abc")
    result = run(["embed", str(src), str(tmp_path / "o"), "--json", *model_args(parity_dir)])
    summary = json.loads(result.output.splitlines()[-1])
    assert summary["embedded"] == 3
    assert summary.get("failed", 0) == 0
    names = sorted(p.name for p in (tmp_path / "o").glob("*.npy"))
    assert names == ["other.npy", "piece.abc.npy", "piece.mtf.npy"]  # only shared stems keep their suffix


def test_every_input_is_accounted_for_when_a_pass_fails_once(tmp_path):
    """A file whose pass fails is recorded as failed with the reason, never retried into silence (a retry
    that succeeded used to be neither saved nor counted); the other files of the batch are embedded."""
    from types import SimpleNamespace

    from clamp2_engine.embed import EmbedTask, run_tasks
    from clamp2_engine.runlog import ErrorLog, RunSummary

    calls: list[int] = []

    class Flaky:
        def prepare_music(self, path):
            return np.zeros((1, 4), dtype=np.int64)

        prepare_text = prepare_music

        def features(self, tower, items, pooled, show_progress=False):
            calls.append(len(items))
            if len(calls) <= 2:  # the batch's pass, then the first file's own pass, fail once
                raise RuntimeError("out of memory (once)")
            return [np.ones(3, dtype=np.float32) for _ in items]

    tasks = [EmbedTask(tmp_path / f"{i}.abc", tmp_path / "out" / f"{i}.npy", "music") for i in range(3)]
    summary, errors = RunSummary("t"), ErrorLog(tmp_path / "errors.jsonl", reset=True)
    run_tasks(SimpleNamespace(encoder=Flaky()), tasks, True, errors, summary, progress=False)
    assert dict(summary.counts) == {"failed": 1, "embedded": 2}
    assert errors.count == 1
    assert [json.loads(line)["reason"] for line in errors.path.read_text().splitlines()] == [
        "RuntimeError: out of memory (once)"
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1.npy", "2.npy"]
    assert calls == [3, 1, 1, 1]  # no second try of the failed file
