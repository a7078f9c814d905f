"""Every command with bad input answers one line in the user's words: no traceback, no exception class
name, the right exit status. A sweep over the CLI, each case a bad value a newcomer could type."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from clamp2_engine.cli import main

CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b")


@pytest.fixture(scope="module")
def world(tmp_path_factory, bench_dir) -> dict[str, Path]:
    """Files a newcomer might hand over by mistake, and a small collection ``k`` to search."""
    root = tmp_path_factory.mktemp("sweep")
    text = root / "notes.txt"
    text.write_text("just some notes\n")
    abc = root / "tune.abc"
    shutil.copy(next((bench_dir / "abc").glob("*.abc")), abc)
    book = root / "book.abc"
    book.write_text("X:1\nT:One\nK:C\nCDEF|]\n\nX:2\nT:Two\nK:G\nGABc|]\n")
    junk = root / "junk.abc"
    junk.write_bytes(b"\x00\x01garbage\xff")
    items = root / "items.jsonl"
    items.write_text('{"summary_en": "x", "filepaths": ["missing.abc"]}\n')
    seed = root / "seed"
    (seed / "abc").mkdir(parents=True)
    shutil.copy(abc, seed / "abc" / "a.abc")
    for name in ("a.jsonl", "b.jsonl"):
        (seed / name).write_text('{"filepaths": ["abc/a.abc"], "title": "A"}\n')
    corpus = root / "corpus"
    corpus.mkdir()
    shutil.copy(abc, corpus / "a.abc")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAMP2_HOME", str(home))
        res = CliRunner().invoke(
            main, ["ingest", str(corpus), "-c", "k", "--model", "demo", "--jobs", "0", "-q"]
        )
    assert res.exit_code == 0, res.output
    return {"root": root, "text": text, "abc": abc, "book": book, "junk": junk, "items": items, "seed": seed,
            "corpus": corpus, "home": home, "nowhere": root / "nowhere"}  # fmt: skip


CASES = [
    ("search", "x", "-c", "nope"),
    ("search", "x", "-c", "k", "--model", "{text}"),
    ("search", "x", "-c", "k", "--model", "{abc}"),
    ("search", "x", "-c", "k", "--model", "{nowhere}"),
    ("search", "--music", "{nowhere}", "-c", "k"),
    ("search", "--music", "{junk}", "-c", "k"),
    ("search", "--music", "{book}", "--tune", "7", "-c", "k"),
    ("search", "x", "-c", "k", "--filter", "nonsense"),
    ("search", "--like", "not-an-id", "-c", "k"),
    ("shell", "-c", "nope"),
    ("embed", "{corpus}", "{root}/out-embed", "--model", "{text}"),
    ("embed", "{nowhere}", "{root}/out-embed"),
    ("ingest", "{corpus}", "-c", "j", "--model", "{text}"),
    ("ingest", "{corpus}", "-c", "j", "--model", "{abc}"),
    ("ingest", "{nowhere}", "-c", "j"),
    ("ingest", "{seed}", "-c", "j", "--summarize", "--base-url", "http://127.0.0.1:9/v1", "--llm", "m"),
    ("ingest", "{corpus}", "-c", "k", "--model", "demo", "--max-text-length", "100000"),
    ("convert", "{nowhere}", "{root}/out-convert", "--to", "mtf"),
    ("eval", "{nowhere}", "{nowhere}"),
    ("score", "{nowhere}", "{nowhere}"),
    ("classify", "predict", "{nowhere}", "--model", "{text}"),
    ("classify", "train", "{nowhere}"),
    ("collections", "info", "nope"),
    ("collections", "drop", "nope", "-y"),
    ("collections", "optimize", "nope"),
    ("collections", "reindex", "nope"),
    ("collections", "verify", "nope"),
    ("collections", "repair", "nope"),
    ("collections", "info", "../etc"),
    ("migrate", "-c", "nope", "--to-path", "{root}/migrated"),
    ("export", "onnx", "--model", "{text}", "--out", "{root}/onnx"),
    ("train", "clamp2", "{items}", "--init", "{text}", "--out", "{root}/run", "--max-steps", "1"),
    ("train", "m3", "{nowhere}", "--out", "{root}/run-m3"),
    (
        "summarize",
        "{items}",
        "{root}/sum.jsonl",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--llm",
        "m",
        "--languages",
        "Klingon",
    ),  # fmt: skip
]


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c[:3]) for c in CASES])
def test_bad_input_is_one_line_in_the_users_words(world, case, monkeypatch):
    monkeypatch.setenv("CLAMP2_HOME", str(world["home"]))
    args = [a.format(**{k: str(v) for k, v in world.items()}) for a in case]
    res = CliRunner().invoke(main, args)
    said = res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, repr(res.exception), said)
    assert res.exit_code != 0, (args, said)
    assert "Traceback" not in said, (args, said)
    assert not CLASS_NAME.search(said), (args, said)
