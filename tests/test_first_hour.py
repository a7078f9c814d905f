"""A newcomer's first hour: fine-tuning the demo model round-trips without flags, answers come before a
model loads, help texts say what the code does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from clamp2_engine.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def seed(tmp_path: Path, bench_dir: Path) -> Path:
    """A seed layout: eight bench pieces as ABC, each with its one-line summary."""
    root = tmp_path / "seed"
    (root / "abc").mkdir(parents=True)
    lines = []
    for path in sorted((bench_dir / "abc").glob("*.abc"))[:8]:
        shutil.copy(path, root / "abc" / path.name)
        text = (bench_dir / "txt" / path.name.replace(".abc", ".txt")).read_text("utf-8").strip()
        lines.append(json.dumps({"summary_en": text, "filepaths": [f"abc/{path.name}"]}))
    (root / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_fine_tuning_the_demo_round_trips_without_flags(seed, tmp_path):
    out = tmp_path / "runs" / "x"
    res = run(
        "train", "clamp2", seed / "items.jsonl", "--init", "demo", "--out", out, "--max-steps", "2",
        "--batch-size", "4", "--eval-split", "0.25", "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "only 2 evaluation item(s)" in res.output  # a tiny eval split is said
    checkpoint = next(p for p in (out / "best.pth", out / "latest.pth") if p.is_file())
    res = run("ingest", seed, "-c", "tuned", "--model", checkpoint, "--jobs", "0", "--json")
    assert res.exit_code == 0, res.output  # the demo's tokenizer and 64-token window, from the checkpoint
    report = json.loads(next(line for line in res.output.splitlines() if line.startswith("{")))
    assert report["vectors"]["text"] == 8
    res = run("search", "a chorale", "-c", "tuned", "--json", "-k", "3")
    assert res.exit_code == 0, res.output  # no --text-model, no Hub
    assert len([line for line in res.output.splitlines() if line.startswith("{")]) == 3


def test_the_init_checkpoint_brings_its_window(tmp_path):
    from clamp2_engine.checkpoints import default_text_model
    from clamp2_engine.models.factory import load_text_assets
    from clamp2_engine.train.build import build_clamp2_model
    from clamp2_engine.train.config import CLaMP2Options

    text = default_text_model("demo")
    hf_config, _tokenizer = load_text_assets(text)
    model, _origin = build_clamp2_model(
        CLaMP2Options(items=tmp_path / "i.jsonl", init="demo"), hf_config, text
    )
    assert model.config.max_text_length == 64


def items_file(tmp_path: Path) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text('{"title": "A", "filepaths": ["a.abc"]}\n{"title": "B", "filepaths": ["b.abc"]}\n')
    return path


def test_summarize_that_failed_exits_1(tmp_path):
    res = run(
        "summarize", items_file(tmp_path), tmp_path / "out.jsonl", "--base-url", "http://127.0.0.1:9/v1",
        "--llm", "m", "--max-retries", "0", "-q",
    )  # fmt: skip
    assert res.exit_code == 1, res.output  # every item failed: the command did not do its job
    res = run(
        "summarize", items_file(tmp_path), tmp_path / "out.jsonl", "--base-url", "http://127.0.0.1:9/v1",
        "--llm", "m", "--max-retries", "0", "-q", "--allow-failures",
    )  # fmt: skip
    assert res.exit_code == 0, res.output


def test_ctrl_c_exits_130_and_says_what_is_kept(tmp_path):
    import signal
    import socket
    import subprocess
    import sys

    silent = socket.socket()  # a server that takes the request and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "clamp2_engine", "summarize", str(items_file(tmp_path)), str(tmp_path / "o.jsonl"),
         "--base-url", f"http://127.0.0.1:{port}/v1", "--llm", "m", "-q"],
        stderr=subprocess.PIPE, text=True,
        # Ctrl-C as in a terminal, even when this run was started in the background (which ignores it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        conn, _addr = silent.accept()  # the command is at work: its request arrived
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        conn.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        silent.close()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err


@pytest.fixture
def tunes(tmp_path: Path) -> Path:
    """A collection ``tunes`` holding a tune book with two tunes and a long title."""
    folder = tmp_path / "tunes"
    folder.mkdir()
    long_title = "A Remarkably Long Title For A Small Tune That Keeps Going"
    (folder / "book.abc").write_text(
        f"X:1\nT:{long_title}\nM:4/4\nL:1/8\nK:C\nCDEF GABc|cBAG FEDC|]\n\n"
        "X:2\nT:Second tune\nM:3/4\nL:1/8\nK:G\nGAB cde|d6|]\n",
        encoding="utf-8",
    )
    res = run("ingest", folder, "-c", "tunes", "--model", "demo", "--jobs", "0", "--no-render", "-q")
    assert res.exit_code == 0, res.output
    return folder


def test_shell_settings_alone_show_their_value_and_music_takes_a_tune(tunes):
    script = f":k\n:mode\n:modality\n:k 2\n:music {tunes / 'book.abc'} 2\n:quit\n"
    res = CliRunner().invoke(main, ["shell", "-c", "tunes"], input=script, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for said in ("k = 10", "mode = hybrid", "modality = any", "k = 2 hits per query"):
        assert said in res.output
    assert "error" not in res.output  # tune 2 of the book, chosen in the shell


def test_tables_written_to_a_pipe_keep_long_titles_whole(tunes, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # a width the user set would win, as it should
    res = run("search", "remarkably long title", "-c", "tunes", "--mode", "lexical")
    assert res.exit_code == 0, res.output
    assert "A Remarkably Long Title For A Small Tune That Keeps Going" in res.stdout


def test_numeric_defaults_in_help_texts_are_the_codes():
    """A help text that names a default names the one the code uses."""
    import re

    import click

    from clamp2_engine.search.fusion import WEIGHTS

    known = {("search", "--lexical-weight"): WEIGHTS[1], ("shell", "--lexical-weight"): WEIGHTS[1]}

    def commands(cmd, path):
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                yield from commands(cmd.get_command(ctx, name), [*path, name])
        else:
            yield " ".join(path), cmd

    for name, cmd in commands(main, []):
        for p in cmd.params:
            for said in re.findall(r"default[: ]+([0-9][0-9.]*)\b", getattr(p, "help", None) or ""):
                code = known.get((name, p.opts[0]), p.default)
                assert float(said.rstrip(".")) == float(code), (name, p.opts[0], said, code)
