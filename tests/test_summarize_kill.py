"""A ``clamp2-engine summarize`` process killed with SIGKILL and resumed ends with the same OUT as an
uninterrupted run, and loses at most the requests that were in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clamp2_engine.ingest.summarize import errors_path_for, summarize_items
from clamp2_engine.ingest.summary_store import read_output

N, CONCURRENCY = 80, 4
HOLD = N // 4  # the fake LLM answers this many requests, then holds the rest until the run is killed
SCRIPT = {"piece 7": ["none"], "piece 33": ["wrong_language"], "piece 61": ["none"]}


def _lines(path: Path) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in read_output(path)[0])


def _errors(out: Path) -> list[tuple[str, str, str]]:
    return sorted((e["identity"], e["kind"], e["language"]) for e in read_output(errors_path_for(out))[0])


def _written(out: Path) -> int:
    """Items ended in OUT or in its errors file."""
    return sum(len(read_output(p)[0]) for p in (out, errors_path_for(out)) if p.exists())


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, llm_server):
    src = tmp_path / "meta.jsonl"
    items = [
        {"title": f"piece {i}", "composer": "C", "filepaths": [f"abc/{i}.abc", f"mtf/{i}.mtf"]}
        for i in range(N)
    ]
    src.write_text("".join(json.dumps(it) + "\n" for it in items), encoding="utf-8")
    opts = dict(model="m", concurrency=CONCURRENCY, seed=3, progress=False)

    whole = tmp_path / "whole.jsonl"
    llm = llm_server(SCRIPT)
    summarize_items(items, whole, base_url=llm.base_url, **opts)

    resumed = tmp_path / "resumed.jsonl"
    llm = llm_server(SCRIPT, hold_after=HOLD)
    cmd = [
        sys.executable,
        "-m",
        "clamp2_engine",
        "summarize",
        str(src),
        str(resumed),
        "--base-url",
        llm.base_url,
        "--llm",
        "m",
        "--concurrency",
        str(CONCURRENCY),
        "--seed",
        "3",
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:  # wait for the state (every answer given is written), then kill: no race with the run
        deadline = time.monotonic() + 120
        while _written(resumed) < HOLD:
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "the answered requests were never written"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    llm.hold_after = None  # the resumed run gets every answer
    llm.released.set()
    kept = len(read_output(resumed)[0])
    assert kept == HOLD - sum(1 for i in range(HOLD) if f"piece {i}" in SCRIPT)
    report = summarize_items(items, resumed, base_url=llm.base_url, **opts)
    asked_twice = [k for k in {e["key"] for e in llm.log} if k not in SCRIPT and llm.attempts(k) > 1]
    assert len(asked_twice) <= CONCURRENCY  # only the requests in flight were lost

    assert report.done + report.none + report.failed + report.skipped == N
    assert _lines(resumed) == _lines(whole)
    assert len(_lines(resumed)) == N - len(SCRIPT)
    assert _errors(resumed) == _errors(whole)
