"""The store at scale, as a user sizes a machine: for each size and quantization, what building a
collection costs and what serving it needs.

Per size and quantization, three processes:

1. the **builder** writes the points through ``Collection.upsert`` (ingest's batches and payloads) and
   builds the HNSW index (``Collection.optimize``); a thread samples its anonymous memory (RssAnon) while
   it runs: ``build_peak_anon_mib``. It generates the vectors a chunk at a time, so its peak is the
   engine's, not the benchmark's arrays.
2. a fresh **server** opens the built collection and runs the timed warm searches (one at a time, k=10:
   one vector name, ``any``, and with a keyword filter matching ~0.5%), then reports its RSS and
   anonymous RSS (``serve_rss_mib``, ``serve_anon_rss_mib``): what a machine needs to serve it.
3. this process computes the exact top 10 of each query (numpy, float32, a chunk at a time) for
   ``recall_at_10``, and measures the disk by component.

The vectors are clustered (a mixture of Gaussians, as embeddings are), not uniform noise; half the points
carry an ``abc`` vector and half an ``mtf`` vector, as a corpus of scores and MIDI files would.

    python benchmarks/bench_store.py --sizes 100000,300000            # none and int8, docs/benchmarks.md
    python benchmarks/bench_store.py --sizes 1000000 --quantization int8 --keep-rows docs/store-rows.jsonl
    python benchmarks/bench_store.py --sizes 20000 --no-write

Each (size, quantization) prints one JSON line with ``points``, ``quantization``, ``recall_at_10``,
``p50_ms``, ``serve_rss_mib``, ``serve_anon_rss_mib``, ``build_peak_anon_mib``, ``disk_mib`` and
``index_s`` (and more).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, table, write_section  # noqa: E402

DIM = 768
COMPOSERS = 200
BATCH = 512
CHUNK = 65536
EF_SWEEP = (128, 256, 512, 1024)
ROWS_FILE = ROOT / "docs" / "store-rows.jsonl"  # every row measured, by size and quantization


def centres(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((max(100, n // 1000), DIM)).astype(np.float32)


def chunks(n: int) -> Iterator[tuple[int, np.ndarray]]:
    """The ``n`` unit vectors around ``max(100, n // 1000)`` centres, ``CHUNK`` at a time (the same
    every time: the builder and the exact search see the same points)."""
    c = centres(n)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        rng = np.random.default_rng(1000 + start // CHUNK)
        out = c[rng.integers(0, len(c), stop - start)] + 0.6 * rng.standard_normal(
            (stop - start, DIM)
        ).astype(np.float32)
        yield start, out / np.linalg.norm(out, axis=1, keepdims=True)


def vectors(n: int, dim: int = DIM) -> np.ndarray:
    """``n`` unit vectors of ``dim`` around ``max(100, n // 1000)`` centres, in memory (for the benchmarks
    whose collections are small: serve, hybrid)."""
    rng = np.random.default_rng(0)
    c = rng.standard_normal((max(100, n // 1000), dim)).astype(np.float32)
    out = c[rng.integers(0, len(c), n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def payload(i: int) -> dict:
    name = "abc" if i % 2 == 0 else "mtf"
    return {
        "piece_id": f"bench:piece{i}.{name}",
        "corpus": "bench",
        "unit": f"piece{i}.{name}",
        "unit_hash": f"{i:016x}",
        "unit_parts": 1,
        "part": "",
        "title": f"Piece {i}",
        "composer": f"Composer {i % COMPOSERS}",
        "source": f"{name}/piece{i}.{name}",
        "sources": {name: f"{name}/piece{i}.{name}"},
        "formats": [name],
        "modalities": [name],
        "lengths": {name: 100 + i % 400},
        "metadata": {"genres": ["Folk" if i % 3 else "Classical"], "meter": "4/4"},
        "summary_en": None,
        "summary_nen": None,
        "model": {"name": "bench", "checkpoint_sha256": "0" * 64},
        "ingested_at": "2026-12-01T00:00:00+00:00",
    }


def status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakAnon:
    """Samples this process's anonymous memory every 50 ms while it runs."""

    def __init__(self) -> None:
        self.peak, self.done = 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, status_mib("RssAnon"))

    def __enter__(self) -> PeakAnon:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, status_mib("RssAnon"))


def build(n: int, quantization: str, folder: Path) -> dict:
    """The builder: the collection written and indexed in ``folder``; its timings and peak memory."""
    from clamp2_engine.store import Point, StoreSpec, open_store, point_id
    from clamp2_engine.store.schema import CollectionRecord

    record = CollectionRecord(
        {"name": "bench", "embed_dim": DIM, "kind": "clamp2", "checkpoint_sha256": "0" * 64},
        lexical=True,
        points=0,
        quantization=quantization,
    )
    out: dict = {"points": n, "quantization": quantization}
    with PeakAnon() as peak, open_store(StoreSpec(path=folder)) as store:
        coll = store.create("bench", record)
        started = time.perf_counter()
        for start, data in chunks(n):
            for b in range(0, len(data), BATCH):
                ids = range(start + b, start + min(len(data), b + BATCH))
                coll.upsert(
                    [
                        Point(point_id(str(i)), {"abc" if i % 2 == 0 else "mtf": data[i - start]}, payload(i))
                        for i in ids
                    ]
                )
        out["write_s"] = time.perf_counter() - started
        started = time.perf_counter()
        coll.optimize()
        out["index_s"] = time.perf_counter() - started
        out["indexed"] = coll.info().get("indexed_vectors")
    out["build_peak_anon_mib"] = peak.peak
    return out


def timed(fn, queries, warm: int = 10) -> tuple[float, float, list]:
    """p50 and p95 in ms of ``fn(q)`` over ``queries`` (after ``warm`` untimed calls), and the results."""
    for q in queries[:warm]:
        fn(q)
    times, results = [], []
    for q in queries:
        started = time.perf_counter()
        results.append(fn(q))
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), results


def serve(folder: Path, queries_file: Path) -> dict:
    """The server: a fresh process opens the collection and runs the timed searches; then its memory."""
    from clamp2_engine.search.ranking import ef_for, nearest
    from clamp2_engine.store import StoreSpec, open_store

    queries = np.load(queries_file)
    out: dict = {}
    with open_store(StoreSpec(path=folder)) as store:
        coll = store.collection("bench")
        out["hnsw_ef"] = ef_for(coll)
        out["p50_ms"], out["p95_ms"], hits = timed(
            lambda q: nearest(coll, q, modality="abc", limit=10)[0], queries
        )
        out["any_p50_ms"], _p95, _ = timed(lambda q: nearest(coll, q, modality="any", limit=10)[0], queries)
        turn = iter(range(10**9))
        out["filter_p50_ms"], _p95, _ = timed(
            lambda q: nearest(
                coll, q, modality="abc", limit=10, filters=[f"composer=Composer {next(turn) % COMPOSERS}"]
            )[0],
            queries,
        )
        out["hits"] = [[h.id for h in found] for found in hits]
        out["sweep"] = {}  # the trade-off of the HNSW search breadth, one vector name
        for ef in EF_SWEEP:
            p50, _p95, found = timed(
                lambda q, ef=ef: nearest(coll, q, modality="abc", limit=10, hnsw_ef=ef)[0], queries
            )
            out["sweep"][ef] = {"p50_ms": p50, "hits": [[h.id for h in f] for f in found]}
        out["serve_rss_mib"] = status_mib("VmRSS")
        out["serve_anon_rss_mib"] = status_mib("RssAnon")
        out["serve_rss"] = rss_by_component(folder / "bench")
    return out


def queries_and_truth(n: int, n_queries: int) -> tuple[np.ndarray, list[list[int]]]:
    """Queries near stored ``abc`` points, and the exact top 10 ``abc`` points of each (a chunk at a time)."""
    rng = np.random.default_rng(1)
    picks = 2 * rng.integers(0, n // 2, n_queries)
    base = np.zeros((n_queries, DIM), dtype=np.float32)
    for start, data in chunks(n):
        inside = (picks >= start) & (picks < start + len(data))
        base[inside] = data[picks[inside] - start]
    queries = base + 0.05 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
    best_s = np.full((n_queries, 10), -np.inf, dtype=np.float32)
    best_i = np.zeros((n_queries, 10), dtype=np.int64)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    for start, data in chunks(n):
        ids = np.arange(start, start + len(data))
        abc = ids % 2 == 0
        scores = qn @ data[abc].T
        s = np.concatenate([best_s, scores], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(ids[abc], scores.shape)], axis=1)
        top = np.argpartition(-s, 10, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return queries, best_i.tolist()


def component(rel: str) -> str:
    """The part of a collection a file path belongs to."""
    if "/wal/" in rel:
        return "wal"
    if "vector_storage-lexical" in rel or "vector_index-lexical" in rel:
        return "sparse_index"
    if "quantized" in rel:
        return "quantized_vectors"
    if "vector_index-" in rel:
        return "hnsw_graph"
    if "vector_storage-" in rel:
        return "vectors"
    if "payload_index" in rel:
        return "payload_indexes"
    if "payload" in rel:
        return "payloads"
    return "other"


def disk_by_component(folder: Path) -> dict[str, float]:
    """MiB on disk of each part of the collection's files (sparse files counted by their blocks)."""
    parts: dict[str, float] = {}
    for f in folder.rglob("*"):
        if f.is_file():
            part = component(f.relative_to(folder).as_posix())
            parts[part] = parts.get(part, 0.0) + f.stat().st_blocks * 512 / 2**20
    return parts


def rss_by_component(folder: Path) -> dict[str, float]:
    """This process's RSS (MiB) by what it maps: each part of the collection's files, ``anon`` (heap and
    other anonymous memory: the engine's in-RAM structures, quantized vectors pinned in RAM among them)
    and ``libraries``."""
    parts: dict[str, float] = {}
    where = os.fspath(folder.resolve()) + "/"
    current = "anon"
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
            path = fields[5] if len(fields) > 5 else ""
            current = (
                component(path[len(where) :])
                if path.startswith(where)
                else ("anon" if not path.startswith("/") else "libraries")
            )
        elif fields[0] == "Rss:":
            parts[current] = parts.get(current, 0.0) + int(fields[1]) / 1024
    return {k: round(v, 1) for k, v in sorted(parts.items())}


def child(argv: list[str]) -> dict:
    """One phase in a fresh process; its JSON result."""
    done = subprocess.run([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(n: int, quantization: str, n_queries: int, work: Path) -> dict:
    folder = work / f"{n}-{quantization}"
    shutil.rmtree(folder, ignore_errors=True)
    row = child(["--build", str(n), "--quantization", quantization, "--folder", str(folder)])
    queries, truth = queries_and_truth(n, n_queries)
    np.save(work / "queries.npy", queries)
    served = child(["--serve", str(folder), "--queries-file", str(work / "queries.npy")])
    from clamp2_engine.store import point_id

    def recall(hits: list[list[str]]) -> float:
        return float(
            np.mean(
                [len({point_id(str(i)) for i in e} & set(f)) / 10 for e, f in zip(truth, hits, strict=True)]
            )
        )

    row["recall_at_10"] = recall(served.pop("hits"))
    for v in served["sweep"].values():
        v["recall_at_10"] = recall(v.pop("hits"))
    parts = disk_by_component(folder / "bench")
    row.update(served)
    row["disk_mib"] = sum(parts.values())
    row["disk"] = {k: round(v, 1) for k, v in sorted(parts.items())}
    shutil.rmtree(folder, ignore_errors=True)
    return row


def load() -> str:
    one_min, five, _ = os.getloadavg()
    return f"load average {one_min:.1f} / {five:.1f} (1 / 5 min) on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,300000")
    ap.add_argument(
        "--quantization", default="none,int8", help="Comma-separated: none, int8, turbo4, binary."
    )
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument(
        "--work", type=Path, default=None, help="Where collections are built (default: a temp dir)."
    )
    ap.add_argument("--no-write", action="store_true", help="Print only; leave docs/ alone.")
    ap.add_argument("--build", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--queries-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.build:
        print(json.dumps(build(args.build, args.quantization, args.folder)), flush=True)
        return
    if args.serve:
        print(json.dumps(serve(args.serve, args.queries_file)), flush=True)
        return
    started_load = load()
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [k.strip() for k in args.quantization.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        for n in sizes:
            for kind in kinds:
                row = measure(n, kind, args.queries, Path(tmp))
                row["machine"], row["load"] = machine(), load()
                print(json.dumps(row), flush=True)
                rows.append(row)
    if not args.no_write:
        rows = keep(rows)
    report(rows, started_load, load(), args.no_write)


def keep(rows: list[dict]) -> list[dict]:
    """Add ``rows`` to docs/store-rows.jsonl, replacing earlier rows of the same size and quantization;
    every row kept."""
    old = (
        [json.loads(x) for x in ROWS_FILE.read_text().splitlines() if x.strip()] if ROWS_FILE.exists() else []
    )
    new = {(r["points"], r["quantization"]) for r in rows}
    kept = [r for r in old if (r["points"], r["quantization"]) not in new] + rows
    kept.sort(key=lambda r: (r["points"], r["quantization"]))
    ROWS_FILE.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


def per_point_kib(small: dict, big: dict, key: str) -> float:
    """How much ``key`` (MiB) grew per point from row ``small`` to row ``big``, in KiB."""
    return (big[key] - small[key]) * 1024 / (big["points"] - small["points"])


def growth_rows(rows: list[dict], f) -> list[list[str]]:
    by = {(r["points"], r["quantization"]): r for r in rows}
    out = []
    for kind in sorted({r["quantization"] for r in rows}):
        sizes = sorted(n for n, k in by if k == kind)
        for a, b in zip(sizes, sizes[1:], strict=False):
            small, big = by[(a, kind)], by[(b, kind)]
            keys = ("serve_rss_mib", "serve_anon_rss_mib", "build_peak_anon_mib", "disk_mib")
            out.append([kind, f"{a:,} -> {b:,}", *(f(per_point_kib(small, big, k), 2) for k in keys)])
    return out


def report(rows: list[dict], load_before: str, load_after: str, no_write: bool) -> None:
    def f(x: float, d: int = 1) -> str:
        return f"{x:,.{d}f}"

    body = table(
        [
            "points",
            "quantization",
            "serve RSS MiB",
            "serve anon MiB",
            "build peak anon MiB",
            "disk MiB",
            "index build s",
            "recall@10",
            "p50 / p95 ms",
            "filtered p50 ms",
            "hnsw_ef",
        ],
        [
            [
                f"{r['points']:,}",
                r["quantization"],
                f(r["serve_rss_mib"], 0),
                f(r["serve_anon_rss_mib"], 0),
                f(r["build_peak_anon_mib"], 0),
                f(r["disk_mib"], 0),
                f(r["index_s"]),
                f(r["recall_at_10"], 4),
                f"{f(r['p50_ms'], 2)} / {f(r['p95_ms'], 2)}",
                f(r["filter_p50_ms"], 2),
                r["hnsw_ef"],
            ]
            for r in rows
        ],
    )
    parts = sorted({k for r in rows for k in r["disk"]})
    disk = table(
        ["points", "quantization", *parts],
        [
            [f"{r['points']:,}", r["quantization"], *(f(r["disk"].get(k, 0.0), 0) for k in parts)]
            for r in rows
        ],
    )
    growth = growth_rows(rows, f)
    sweep = table(
        ["points", "quantization", "hnsw_ef", "p50 ms", "recall@10"],
        [
            [f"{r['points']:,}", r["quantization"], ef, f(v["p50_ms"], 2), f(v["recall_at_10"], 4)]
            for r in rows
            for ef, v in sorted((r.get("sweep") or {}).items(), key=lambda kv: int(kv[0]))
        ],
    )
    machines = sorted({r["machine"] for r in rows})
    md = "\n".join(
        [
            "## Store at scale: quantization, memory, disk, recall (`benchmarks/bench_store.py`)",
            "",
            "Measured on: "
            + "; ".join(machines)
            + f". Last run: {load_before} at the start, {load_after} at "
            "the end; each row's own load is in docs/store-rows.jsonl. 768-d clustered unit vectors, one music "
            "vector per point (half abc, half mtf: two vector groups), ingest-like payloads, the lexical vector "
            "and every payload index; warm searches one at a time, k=10, at the collection's default `hnsw_ef` "
            "and rescoring; recall@10 against exact float32 search.",
            "",
            body,
            "",
            "Serve RSS: a fresh process that opened the collection and ran the searches, measured after them "
            "(its Python, numpy and clamp2-engine included, about 60 MiB; and about 1.5 GiB, whatever the "
            "size, of clean file pages: the empty appendable segments' word-index pages and the write-ahead "
            "log, which the kernel may drop; `serve_rss` in the rows splits it by component). Build peak "
            "anon: the building process's anonymous memory, sampled every 50 ms (the benchmark's own "
            "vectors, 65,536 at a time, included). The 1M row was built while the test suite ran on the "
            "same 2 cores (its build time and search times are upper bounds).",
            "",
            "The search breadth (`hnsw_ef`) against recall, one vector name, the same queries:",
            "",
            sweep,
            "",
            "Growth per point (KiB):",
            "",
            table(["quantization", "points", "serve RSS", "serve anon", "build peak anon", "disk"], growth),
            "",
            "Disk by component (MiB):",
            "",
            disk,
            "",
        ]
    )
    print(md)
    if not no_write:
        write_section("store", md)


if __name__ == "__main__":
    main()
