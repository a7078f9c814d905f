"""Hostile inputs found by a fault trial: each gets a clear per-item error and the batch goes on.

Cases that could hang (a FIFO) run the CLI in a subprocess with a time limit, so a regression fails the
test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from index_helpers import model_args

HANG_GUARD_S = 180  # far above what these runs take; only a hang reaches it


def cli(*args, home: Path, timeout: float = HANG_GUARD_S) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLAMP2_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "clamp2_engine", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture()
def hostile(tmp_path: Path, parity_dir: Path) -> Path:
    """A folder with one good piece of each kind, a FIFO named like music, and links leading out."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.abc").write_bytes((parity_dir / "inputs" / "abc" / "bach_bwv66_6.abc").read_bytes())
    (d / "tune.mtf").write_bytes((parity_dir / "inputs" / "mtf" / "primitive_test01.mtf").read_bytes())
    os.mkfifo(d / "pipe.abc")
    os.mkfifo(d / "pipe.mid")
    outside = tmp_path / "secret.abc"
    outside.write_text("X:1\nT:secret\nK:C\nCDEF|\n", encoding="utf-8")
    (d / "passwd.abc").symlink_to(outside)
    (d / "inside.abc").symlink_to(d / "good.abc")  # a link inside the tree is an ordinary input
    return d


def errors_of(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    return {Path(r["source"]).name: r["reason"] for r in rows}


def test_convert_skips_fifos_and_links_out(hostile, tmp_path):
    out = tmp_path / "out"
    proc = cli(
        "convert", hostile, out, "--to", "abc", "--convert-timeout", "20", "--json", home=tmp_path / "home"
    )
    errors = errors_of(out / "errors.jsonl")
    assert "not a regular file (a FIFO)" in errors["pipe.abc"]
    assert "leads out of" in errors["passwd.abc"]
    assert sorted(p.name for p in out.glob("*.abc")) == ["good.abc", "inside.abc"]
    assert "secret" not in (out / "good.abc").read_text("utf-8")
    assert proc.returncode in (0, 1), proc.stderr


@pytest.mark.slow  # whole CLI processes; the quick loop keeps the in-process checks
def test_embed_skips_fifos_and_links_out(hostile, tmp_path, parity_dir):
    out = tmp_path / "out"
    proc = cli("embed", hostile, out, "--pooled", "--json", *model_args(parity_dir), home=tmp_path / "home")
    errors = errors_of(out / "errors.jsonl")
    assert set(errors) == {"pipe.abc", "passwd.abc"}, errors
    assert sorted(p.name for p in out.glob("*.npy")) == ["good.npy", "inside.npy", "tune.npy"]
    assert json.loads(proc.stdout)["failed"] == 2


@pytest.mark.slow  # whole CLI processes; the quick loop keeps the in-process checks
def test_ingest_skips_fifos_and_links_out(hostile, tmp_path, parity_dir):
    home = tmp_path / "home"
    proc = cli("ingest", hostile, "-c", "h", "--no-render", "--json", *model_args(parity_dir), home=home)
    report = json.loads(proc.stdout)
    assert report["points"] == 3, proc.stderr  # good.abc, tune.mtf, inside.abc
    assert (report["units"], report["failed"], proc.returncode) == (6, 3, 1)  # one meaning of failed: items
    errors = errors_of(home / "ingest" / "h.errors.jsonl")
    assert set(errors) == {"pipe.abc", "pipe.mid", "passwd.abc"}, errors
    assert all("not a regular file" in errors[n] for n in ("pipe.abc", "pipe.mid"))


@pytest.mark.slow  # whole CLI processes; the quick loop keeps the in-process checks
def test_search_by_a_fifo_or_a_huge_file_is_refused_at_once(hostile, tmp_path, parity_dir):
    home = tmp_path / "home"
    assert (
        cli(
            "ingest",
            hostile,
            "-c",
            "h",
            "--no-render",
            "--allow-failures",
            *model_args(parity_dir),
            home=home,
        ).returncode
        == 0
    )
    proc = cli("search", "--music", hostile / "pipe.mid", "-c", "h", home=home)
    assert proc.returncode == 1
    assert "not a regular file (a FIFO)" in proc.stderr
    huge = tmp_path / "huge.abc"
    with open(huge, "w", encoding="utf-8") as fh:
        fh.write("X:1\nK:C\n" + "CDEF|" * (10 * 2**20 // 5))
    proc = cli("search", "--music", huge, "-c", "h", home=home)
    assert proc.returncode == 1
    assert "a query piece may have at most 8 MiB" in proc.stderr
    assert "Traceback" not in proc.stderr


DEEP = b"[" * 100_000  # RecursionError in json.loads
NOT_UTF8 = b'{"summary_en": "caf\xff", "filepaths": ["abc/x.abc"]}'


def hostile_seed(root: Path, parity_dir: Path) -> Path:
    """A seed layout whose items.jsonl has two good items, a line nested 100,000 deep and one non-UTF-8."""
    (root / "abc").mkdir(parents=True)
    lines = []
    for path in sorted((parity_dir / "inputs" / "abc").glob("*.abc"))[:2]:
        (root / "abc" / path.name).write_bytes(path.read_bytes())
        item = {"title": path.stem, "summary_en": f"the piece {path.stem}", "filepaths": [f"abc/{path.name}"]}
        lines.append(json.dumps(item).encode())
    items = root / "items.jsonl"
    items.write_bytes(b"\n".join([lines[0], DEEP, NOT_UTF8, lines[1]]) + b"\n")
    return items


@pytest.mark.slow  # whole CLI processes; the quick loop keeps the in-process checks
def test_hostile_jsonl_lines_are_error_rows_in_ingest(tmp_path, parity_dir):
    home = tmp_path / "home"
    hostile_seed(tmp_path / "seed", parity_dir)
    proc = cli("ingest", tmp_path / "seed", "-c", "j", "--json", *model_args(parity_dir), home=home)
    assert json.loads(proc.stdout)["points"] == 2, proc.stderr
    reasons = [
        json.loads(line)["reason"] for line in (home / "ingest" / "j.errors.jsonl").read_text().splitlines()
    ]
    assert any("nested too deep" in r for r in reasons)
    assert any("not UTF-8" in r for r in reasons)
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # whole CLI processes; the quick loop keeps the in-process checks
def test_hostile_jsonl_lines_are_error_rows_in_train(tmp_path, parity_dir):
    items = hostile_seed(tmp_path / "seed", parity_dir)
    out = tmp_path / "run"
    sizes = "--hidden 32 --layers 1 --patch-length 16 --text-hidden 32 --text-layers 1 --embed-dim 32"
    args = ["--text-model", parity_dir / "text_model", *sizes.split()]
    args += "--max-steps 1 --batch-size 2 --eval-split 0 --device cpu -q".split()
    proc = cli("train", "clamp2", items, "--out", out, *args, home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr[-2000:]
    reasons = [json.loads(line)["reason"] for line in (out / "errors.jsonl").read_text().splitlines()]
    assert any("nested too deep" in r for r in reasons)
    assert any("not UTF-8" in r for r in reasons)


def test_hostile_jsonl_lines_are_error_rows_in_summarize(tmp_path, parity_dir, llm_server):
    from click.testing import CliRunner

    from clamp2_engine.cli import main
    from clamp2_engine.ingest.summarize import LOAD_ERROR_KEY, load_items

    src = hostile_seed(tmp_path / "seed", parity_dir)
    out = tmp_path / "out.jsonl"
    llm = llm_server()
    res = CliRunner().invoke(
        main, ["summarize", str(src), str(out), "--base-url", llm.base_url, "--llm", "m", "-q"]
    )
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    assert len(out.read_text().splitlines()) == 2  # the two good items
    reasons = [json.loads(x)["reason"] for x in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert any("nested too deep" in r for r in reasons)
    assert any("not UTF-8" in r for r in reasons)

    items = load_items(src)
    assert [i.get(LOAD_ERROR_KEY, "ok")[:18] for i in items] == [
        "ok",
        "invalid JSON: nest",
        "not UTF-8 (byte 0x",
        "ok",
    ]


# -- replies of an OpenAI-compatible server that are no usable answer ------------------------------
SECRET = "sk-test-hardening-0123456789"
BAD_REPLIES = {  # key -> (script, where the item ends, requests with --answer-retries 1)
    "non-json-body": (["non_json_body"], "errors", 2),
    "choices-string": (["choices_string"], "errors", 2),
    "content-number": (["content_number", "valid"], "out", 2),
    "key-in-answer": (["echo_key"], "errors", 2),
    "dripping": ([{"drip": 0.15}], "errors", 2),
    "fine": (["valid"], "out", 1),
}


@pytest.mark.slow  # whole CLI processes; the quick loop keeps the in-process checks
def test_bad_replies_are_error_rows_and_the_key_never_lands(tmp_path, monkeypatch, capsys, llm_server):
    from clamp2_engine.ingest.summarize import errors_path_for, summarize_items
    from clamp2_engine.ingest.summary_store import read_output

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    items = [{"title": k, "composer": "Somebody", "filepaths": [f"abc/{k}.abc"]} for k in BAD_REPLIES]
    out = tmp_path / "items.jsonl"
    llm = llm_server({k: v[0] for k, v in BAD_REPLIES.items()})
    report = summarize_items(
        items,
        out,
        base_url=llm.base_url,
        model="m",
        timeout=2.0,
        max_retries=1,
        answer_retries=1,
        backoff_base=0.01,
        backoff_max=0.02,
        progress=False,
    )
    attempts = {k: llm.attempts(k) for k in BAD_REPLIES}
    done = {r["title"] for r in read_output(out)[0]}
    errors = {e["source"].split("/")[-1][:-4]: e for e in read_output(errors_path_for(out))[0]}
    assert done == {k for k, v in BAD_REPLIES.items() if v[1] == "out"}
    assert set(errors) == {k for k, v in BAD_REPLIES.items() if v[1] == "errors"}  # each item once
    assert attempts == {k: v[2] for k, v in BAD_REPLIES.items()}
    assert errors["key-in-answer"]["kind"] == "key_in_answer"
    assert errors["dripping"]["kind"] == "timeout"  # a 2 s deadline for the whole answer, not per byte
    assert report.done == 2
    assert report.failed == 4
    captured = capsys.readouterr()
    for text in (out.read_text(), errors_path_for(out).read_text(), captured.out, captured.err):
        assert SECRET not in text


def test_convert_counts_items_and_exits_1_when_items_failed(tmp_path, parity_dir):
    src = tmp_path / "mtf"
    src.mkdir()
    (src / "good.mtf").write_bytes((parity_dir / "inputs" / "mtf" / "primitive_test01.mtf").read_bytes())
    (src / "zero_ticks.mtf").write_text("ticks_per_beat 0\nnote_on 0 0 60 64\n", encoding="utf-8")
    (src / "huge_delta.mtf").write_text(
        "ticks_per_beat 480\nnote_on 100000000000000000000 0 60 64\n", encoding="utf-8"
    )
    out = tmp_path / "midi"
    proc = cli("convert", src, out, "--to", "midi", "--json", home=tmp_path / "home")
    summary = json.loads(proc.stdout)
    assert (proc.returncode, summary["failed"], summary["converted"]) == (1, 2, 1)
    errors = errors_of(out / "errors.jsonl")
    assert "ticks_per_beat 0 is outside 1..32767" in errors["zero_ticks.mtf"]
    assert "delta time 100000000000000000000 is outside" in errors["huge_delta.mtf"]
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".mid") == ["good.mid"]
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "zero_ticks.mtf").write_bytes((src / "zero_ticks.mtf").read_bytes())
    assert (
        cli("convert", only_bad, tmp_path / "o2", "--to", "midi", "-q", home=tmp_path / "home").returncode
        == 1
    )
    allowed = cli(
        "convert", only_bad, tmp_path / "o3", "--to", "midi", "-q", "--allow-failures", home=tmp_path / "home"
    )
    assert allowed.returncode == 0


def test_small_ones(tmp_path, parity_dir, monkeypatch):
    """A filter key or a collection name that cannot be is a usage error before anything opens; NaN in
    metadata is null in JSON; a huge title is stored shortened, and said so; control characters of a query
    are escaped; a checkpoint with NaN weights is refused."""
    import torch
    from click.testing import CliRunner

    from clamp2_engine.cli import main

    monkeypatch.setenv("CLAMP2_HOME", str(tmp_path / "home"))
    run = CliRunner().invoke
    bad_filter = run(main, ["search", "x", "-c", "c", "--filter", "../../etc=1"])
    assert bad_filter.exit_code == 2
    assert "bad filter key '../../etc'" in bad_filter.output
    assert not (tmp_path / "home").exists()  # refused before the store was opened (or a model loaded)
    empty = run(main, ["collections", "drop", "", "-y"])
    assert empty.exit_code == 2
    assert "is no collection name" in empty.output
    assert "Traceback" not in empty.output

    seed = tmp_path / "seed"
    (seed / "abc").mkdir(parents=True)
    (seed / "abc" / "a.abc").write_bytes((parity_dir / "inputs" / "abc" / "bach_bwv66_6.abc").read_bytes())
    item = {
        "title": "T" * 5_000_000,
        "rating": float("nan"),
        "summary_en": "a hymn",
        "filepaths": ["abc/a.abc"],
    }
    (seed / "items.jsonl").write_text(json.dumps(item) + "\n", encoding="utf-8")  # Python writes NaN
    res = run(main, ["ingest", str(seed), "-c", "c", "-q", *model_args(parity_dir)])
    assert res.exit_code == 0, res.output
    reasons = [
        json.loads(x)["reason"]
        for x in (tmp_path / "home" / "ingest" / "c.errors.jsonl").read_text().splitlines()
    ]
    assert reasons == ["title: 5,000,000 characters cut to 4,096 in the payload"]
    res = run(main, ["search", "a hymn\x1b[2J\x07", "-c", "c", "--json"])
    hit = json.loads(res.stdout.splitlines()[0])  # standard JSON: NaN would not parse strictly
    assert hit["payload"]["metadata"]["rating"] is None
    assert len(hit["payload"]["title"]) == 4096
    assert "NaN" not in res.stdout
    table = run(main, ["search", "a hymn\x1b[2J\x07", "-c", "c"])
    assert "\x1b" not in table.stdout
    assert "\\x1b[2J\\x07" in table.stdout

    state = torch.load(parity_dir / "checkpoints" / "clamp2.pth", weights_only=True)
    state["model"]["music_proj.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    res = run(
        main,
        [
            "embed",
            str(seed / "abc"),
            str(tmp_path / "out"),
            "--model",
            str(tmp_path / "nan.pth"),
            "--text-model",
            str(parity_dir / "text_model"),
            "--pooled",
        ],
    )
    assert res.exit_code == 1
    assert "music_proj.weight holds NaN or infinite values" in res.output
