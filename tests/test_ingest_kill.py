"""A killed ingest (SIGKILL in the middle of writing a batch) is finished by the next run: every piece,
no duplicate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from helpers import sigkilled
from index_helpers import model_args

from clamp2_engine.cli import main
from clamp2_engine.search.ranking import nearest
from clamp2_engine.store import StoreSpec, open_store

BOOK = "".join(
    f"X:{i}\nT:Tune {i}\nM:4/4\nL:1/8\nK:D\n|:DFAd fdA{'FGA'[i - 1]}|GBdg fdAF:|\n\n" for i in (1, 2, 3)
)

# Runs the real CLI; the second batch writes all its points but one, says so, and waits to be killed.
DRIVER = textwrap.dedent(
    """
    import sys, time
    from clamp2_engine.store import Collection
    real, batches = Collection.upsert, []

    def upsert(self, points):
        batches.append(len(points))
        if len(batches) == 2:
            real(self, points[:-1])
            print("killable", len(points) - 1, flush=True)
            time.sleep(600)
        real(self, points)

    Collection.upsert = upsert
    from clamp2_engine.cli import main
    main(sys.argv[1:])
    """
)


@pytest.mark.slow
def test_sigkill_mid_batch_then_rerun(tmp_path, parity_dir, bench_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    mtfs = sorted((bench_dir / "mtf").glob("bach_*.mtf"))[:11]
    for i, src in enumerate(mtfs[:7], 1):  # batch 1: a01-a04; batch 2: a05-a07 and the book
        shutil.copy(src, corpus / f"a{i:02d}.mtf")
    (corpus / "b_book.abc").write_text(BOOK)  # one unit, three pieces: the last one is not written
    for i, src in enumerate(mtfs[7:], 1):  # batch 3, never reached
        shutil.copy(src, corpus / f"c{i:02d}.mtf")
    store = tmp_path / "qdrant"
    args = [
        "ingest",
        str(corpus),
        "-c",
        "k",
        "--qdrant-path",
        str(store),
        "--write-batch",
        "4",
        "--no-render",
        "--jobs",
        "0",
        "-q",
        *model_args(parity_dir),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    with sigkilled(proc):
        line = proc.stdout.readline()
        if not line.startswith("killable"):
            proc.kill()
            pytest.fail(f"the ingest did not reach its second batch: {line!r} {proc.stderr.read()[-2000:]}")
    with open_store(StoreSpec(path=store)) as opened:
        assert opened.collection("k").count() == 4 + 5  # batch 1, and batch 2 less one piece

    res = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    # a01-a07 are complete and skipped; the half-written book and the three never reached are embedded
    assert (report["units"], report["skipped"], report["embedded"], report["failed"]) == (12, 7, 5, 0)
    with open_store(StoreSpec(path=store)) as opened:
        pts = [p for page in opened.collection("k").scroll() for p in page]
    ids = [p.payload["piece_id"] for p in pts]
    assert len(ids) == len(set(ids)) == 14
    expected = {f"corpus:a{i:02d}.mtf" for i in range(1, 8)} | {f"corpus:c{i:02d}.mtf" for i in range(1, 5)}
    assert set(ids) == expected | {f"corpus:b_book.abc#{i}" for i in (1, 2, 3)}
    again = json.loads(CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False).stdout)
    assert (again["skipped"], again["embedded"], again["removed"]) == (12, 0, 0)


# Builds a collection big enough for an HNSW index (50k points), then starts the index build and says so.
BUILDER = textwrap.dedent(
    """
    import sys, numpy as np
    from clamp2_engine.store import Point, StoreSpec, open_store, point_id
    from clamp2_engine.store.schema import CollectionRecord
    rng = np.random.default_rng(0)
    with open_store(StoreSpec(path=sys.argv[1])) as store:
        coll = store.create("big", CollectionRecord({"name": "x", "embed_dim": 128, "kind": "clamp2"}))
        vectors = rng.standard_normal((50_000, 128)).astype(np.float32)
        for start in range(0, len(vectors), 2000):
            coll.upsert([Point(point_id(str(i)), {"abc": vectors[i]}, {"n": i}) for i in range(start, start + 2000)])
        print("indexing", flush=True)
        coll.optimize()
        print("done", flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_during_the_index_build_then_reopen_and_rebuild(tmp_path):
    import numpy as np

    store = tmp_path / "edge"
    proc = subprocess.Popen([sys.executable, "-c", BUILDER, str(store)], stdout=subprocess.PIPE, text=True)
    with sigkilled(proc):  # the build of 50k points takes seconds: the kill lands at its start
        assert proc.stdout.readline().strip() == "indexing"
    assert proc.stdout.read() == ""  # killed before the build could say "done"
    with open_store(StoreSpec(path=store)) as opened:
        coll = opened.collection("big")
        assert coll.count() == 50_000
        assert coll.count(vector="abc") == 50_000
        q = np.random.default_rng(0).standard_normal((50_000, 128)).astype(np.float32)[123]
        assert nearest(coll, q, modality="abc", limit=1)[0][0].payload == {"n": 123}
        coll.optimize()
        assert coll.info()["indexed_vectors"] == 50_000
        assert nearest(coll, q, modality="abc", limit=1)[0][0].payload == {"n": 123}
