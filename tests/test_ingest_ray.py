"""`ingest --runner ray` on a real local Ray (2 CPUs, started and stopped here) with the fixture model:
the same collection as the single-process ingest, idempotent re-runs, bad input as error rows, and an
interrupted run completed by the next one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from index_helpers import build_seed, cos, model_args

from clamp2_engine.cli import main
from clamp2_engine.store import StoreSpec, open_store

ray = pytest.importorskip("ray", reason="the [ray] extra")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def corpus(tmp_path, bench_dir):
    root = tmp_path / "seed"
    bad = {"title": "binary junk", "summary_en": "noise", "filepaths": ["abc/junk.abc"]}
    build_seed(root, bench_dir, extra_items=[bad])
    (root / "abc" / "junk.abc").write_bytes(b"\x00\x01\x02 not music \xff" * 50)
    return root


def ingest(root, store, name, *extra):
    args = ["ingest", str(root), "-c", name, "--qdrant-path", str(store), "--no-render", "--json"]
    res = CliRunner().invoke(main, [*args, "--write-batch", "2", *extra], catch_exceptions=False)
    assert res.exit_code in (0, 1), res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def points(store, name):
    with open_store(StoreSpec(path=store)) as s:
        return {p.payload["piece_id"]: p for page in s.collection(name).scroll(vectors=True) for p in page}


def test_ray_gives_the_single_process_collection(local_ray, corpus, tmp_path, parity_dir):
    store = tmp_path / "edge"
    local = ingest(corpus, store, "local", *model_args(parity_dir))
    on_ray = ingest(corpus, store, "ray", *model_args(parity_dir), "--runner", "ray")
    for key in ("units", "skipped", "embedded", "failed", "points", "vectors"):
        assert on_ray[key] == local[key], key
    assert (on_ray["embedded"], on_ray["failed"]) == (6, 1)  # the junk file is an error row, not a failure
    errors = [json.loads(line) for line in open(on_ray["errors"], encoding="utf-8")]
    assert any("junk.abc" in e["source"] for e in errors)
    a, b = points(store, "local"), points(store, "ray")
    assert a.keys() == b.keys()
    assert {p.id for p in a.values()} == {p.id for p in b.values()}
    for pid, p in a.items():
        q = b[pid]
        assert {k: v for k, v in p.payload.items() if k != "ingested_at"} == {
            k: v for k, v in q.payload.items() if k != "ingested_at"
        }
        assert p.vectors.keys() == q.vectors.keys()
        assert p.vectors.get("lexical") == q.vectors.get("lexical")
        for name in set(p.vectors) - {"lexical"}:
            assert cos(np.asarray(p.vectors[name]), np.asarray(q.vectors[name])) >= 0.99999
    again = ingest(corpus, store, "ray", *model_args(parity_dir), "--runner", "ray")
    assert (again["skipped"], again["embedded"], again["removed"]) == (6, 0, 0)


def test_an_interrupted_ray_run_is_completed_by_the_next(
    local_ray, corpus, tmp_path, parity_dir, monkeypatch
):
    from clamp2_engine.ingest import ray_engine

    store = tmp_path / "edge"
    real, written = ray_engine.write_units, []

    def interrupt_after_one_batch(plan, prepared, *args):
        if written:
            raise KeyboardInterrupt
        written.append(len(prepared))
        return real(plan, prepared, *args)

    monkeypatch.setattr(ray_engine, "write_units", interrupt_after_one_batch)
    res = CliRunner().invoke(
        main,
        ["ingest", str(corpus), "-c", "k", "--qdrant-path", str(store), "--no-render", "--write-batch", "2",
         "--runner", "ray", *model_args(parity_dir)],
    )  # fmt: skip
    assert res.exit_code == 130  # Ctrl-C's status, as shells use
    assert "interrupted" in res.output
    monkeypatch.undo()
    done = written[0]  # units of the one batch written
    report = ingest(corpus, store, "k", *model_args(parity_dir), "--runner", "ray")
    assert report["skipped"] >= 1
    assert report["skipped"] + report["embedded"] + report["failed"] == 7
    assert report["skipped"] <= done
    ids = [p.payload["piece_id"] for p in points(store, "k").values()]
    assert len(ids) == len(set(ids)) == 6


def test_without_the_ray_engine_nothing_imports_ray(tmp_path):
    import subprocess
    import sys

    code = "import sys, clamp2_engine.cli, clamp2_engine.ingest.pipeline; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
