"""The store at scale: Qdrant Edge (embedded) at 20k / 100k / 1M points against the old local mode.

Each size runs in its own process (so its peak RSS is its own): points of 768-d vectors with payloads
like ingest's are written through ``Collection.upsert``, the HNSW index is built (``Collection.optimize``),
then warm searches are timed one query at a time: one vector name, ``any`` (abc and mtf fused), and with a
keyword filter (``composer=...``, ~0.5% of the points). Recall@10 is measured against exact search
(numpy over the same vectors). qdrant-client's local mode, the embedded store before Qdrant Edge, runs
the same 20k-point workload in the same run for the ratio. A warm text query's encoding (a full-size,
random-weight XLM-R text tower, one thread as ``search`` uses) is timed apart and added to the 1M search.

The vectors are clustered (a mixture of Gaussians, as embeddings are), not uniform noise; half the points
carry an ``abc`` vector and half an ``mtf`` vector, as a corpus of scores and MIDI files would.

    python benchmarks/bench_store.py                       # 20k, 100k, 1M (about an hour on 2 cores)
    python benchmarks/bench_store.py --sizes 20000 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, table, write_section  # noqa: E402
from clamp2_engine.search.ranking import HNSW_EF, nearest  # noqa: E402

DIM = 768
COMPOSERS = 200
BATCH = 512
EF_SWEEP = (100, 128, 256, 512)  # 100: Qdrant's default; clamp2-engine searches with HNSW_EF


def vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors around ``max(100, n // 1000)`` centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(100, n // 1000), dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):
        stop = min(n, start + 65536)
        picks = rng.integers(0, len(centres), stop - start)
        out[start:stop] = centres[picks] + 0.6 * rng.standard_normal((stop - start, dim)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


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


def anon_mib() -> float:
    """This process's anonymous memory (its RSS without the memory-mapped segment files)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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


def one(n: int, engine: str, n_queries: int, folder: Path) -> dict:
    """The workload at ``n`` points on ``engine`` (``edge`` or ``local-mode``), in this process."""
    from clamp2_engine.store import Point, StoreSpec, open_store, point_id
    from clamp2_engine.store.schema import CollectionRecord

    data = vectors(n, DIM)
    spec = StoreSpec(path=folder / engine, engine=engine)
    record = CollectionRecord(
        {"name": "bench", "embed_dim": DIM, "kind": "clamp2", "checkpoint_sha256": "0" * 64}
    )
    out: dict = {"points": n, "engine": engine}
    with open_store(spec) as store:
        coll = store.create("bench", record)
        started = time.perf_counter()
        for start in range(0, n, BATCH):
            stop = min(n, start + BATCH)
            coll.upsert(
                [
                    Point(point_id(str(i)), {"abc" if i % 2 == 0 else "mtf": data[i]}, payload(i))
                    for i in range(start, stop)
                ]
            )
        out["upsert_per_s"] = n / (time.perf_counter() - started)
        started = time.perf_counter()
        coll.optimize()
        out["index_s"] = time.perf_counter() - started
        info = store.backend.info("bench")
        out["indexed"] = info.get("indexed_vectors")
        out["disk_mib"] = info.get("disk_bytes", 0) / 2**20
        rng = np.random.default_rng(1)
        picks = rng.integers(0, n, n_queries)
        queries = data[picks] + 0.05 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
        out["p50_ms"], out["p95_ms"], hits = timed(
            lambda q: nearest(coll, q, modality="abc", limit=10)[0], queries
        )
        out["any_p50_ms"], out["any_p95_ms"], _ = timed(
            lambda q: nearest(coll, q, modality="any", limit=10)[0], queries
        )
        turn = iter(range(10**9))
        out["filter_p50_ms"], out["filter_p95_ms"], _ = timed(
            lambda q: nearest(
                coll, q, modality="abc", limit=10, filters=[f"composer=Composer {next(turn) % COMPOSERS}"]
            )[0],
            queries,
        )
        abc = np.flatnonzero(np.arange(n) % 2 == 0)
        recall = []
        for q, found in zip(queries[:100], hits[:100], strict=False):
            exact = abc[np.argsort(-(data[abc] @ q))[:10]]
            recall.append(len({point_id(str(i)) for i in exact} & {h.id for h in found}) / 10)
        out["recall_at_10"] = float(np.mean(recall))
        exact = [abc[np.argsort(-(data[abc] @ q))[:10]] for q in queries[:100]]
        out["ef"] = {}  # the speed / recall trade-off of the HNSW search breadth
        for ef in EF_SWEEP if engine == "edge" and n >= 100_000 else ():
            p50, _p95, found = timed(
                lambda q, ef=ef: nearest(coll, q, modality="abc", limit=10, hnsw_ef=ef)[0], queries[:100]
            )
            hit = [
                len({point_id(str(i)) for i in e} & {h.id for h in f}) / 10
                for e, f in zip(exact, found, strict=True)
            ]
            out["ef"][ef] = {"p50_ms": p50, "recall_at_10": float(np.mean(hit))}
        out["rss_mib"] = rss_mib()
        out["anon_rss_mib"] = anon_mib()
    return out


def encode_ms(n_queries: int = 50) -> float:
    """p50 of encoding a short query with a full-size text tower (random weights), one thread."""
    import torch

    from clamp2_engine.checkpoints import save_checkpoint
    from clamp2_engine.models import CLaMP2Config, CLaMP2Model
    from clamp2_engine.pretrained import CLaMP2

    torch.manual_seed(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(Path(tmp) / "base.pth", CLaMP2Model(CLaMP2Config()).state_dict())
        text_model = ROOT / "tests" / "fixtures" / "clamp2-parity" / "text_model"
        model = CLaMP2.from_pretrained(ckpt, text_model, towers=("text",), device="cpu")
    texts = [f"a melancholic waltz for solo piano, number {i}" for i in range(n_queries)]
    p50, _p95, _ = timed(model.encode_text, texts, warm=3)
    return p50


def child(argv: list[str]) -> dict:
    """Run one measurement in a fresh process; its result and its peak RSS."""
    proc = subprocess.Popen([sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{argv} failed ({status})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def load() -> str:
    one_min, five, _ = os.getloadavg()
    return f"load average {one_min:.1f} / {five:.1f} (1 / 5 min) on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20000,100000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-write", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    ap.add_argument(
        "--previous", type=Path, help="A log of an earlier run: its rows for sizes not measured now."
    )
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--engine", default="edge", help=argparse.SUPPRESS)
    ap.add_argument("--encode", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.encode:
        print(json.dumps({"encode_p50_ms": encode_ms()}))
        return
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one(args.one, args.engine, args.queries, Path(tmp))), flush=True)
        return
    started_load = load()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    if args.previous:
        for line in args.previous.read_text().splitlines():
            if line.startswith("{") and '"points"' in line:
                row = json.loads(line)
                if row["points"] not in sizes:
                    rows.append(row)
    for n in sizes:
        engines = ["edge", "local-mode"] if n <= 20_000 else ["edge"]
        for engine in engines:
            r = child(["--one", str(n), "--engine", engine, "--queries", str(args.queries)])
            print(json.dumps(r), flush=True)
            rows.append(r)
    encode = child(["--encode"])["encode_p50_ms"]
    print(json.dumps({"encode_p50_ms": encode}))
    report(rows, encode, started_load, load(), args.no_write)


def report(rows: list[dict], encode: float, load_before: str, load_after: str, no_write: bool) -> None:
    def f(x: float, d: int = 1) -> str:
        return f"{x:,.{d}f}"

    sweep = [
        [f"{r['points']:,}", ef, f"{v['p50_ms']:.2f}", f"{v['recall_at_10']:.3f}"]
        for r in rows
        for ef, v in sorted((r.get("ef") or {}).items(), key=lambda kv: int(kv[0]))
    ]
    body = table(
        [
            "engine",
            "points",
            "upsert /s",
            "index build s",
            "search p50 / p95 ms",
            "any p50 ms",
            "filtered p50 / p95 ms",
            "recall@10",
            "peak RSS MiB",
            "disk MiB",
        ],
        [
            [
                r["engine"],
                f"{r['points']:,}",
                f(r["upsert_per_s"], 0),
                f(r["index_s"]),
                f"{f(r['p50_ms'], 2)} / {f(r['p95_ms'], 2)}",
                f(r["any_p50_ms"], 2),
                f"{f(r['filter_p50_ms'], 2)} / {f(r['filter_p95_ms'], 2)}",
                f(r["recall_at_10"], 3),
                f(r["peak_rss_mib"], 0),
                f(r["disk_mib"], 0) if r["engine"] == "edge" else "-",
            ]
            for r in rows
        ],
    )
    lines = [
        "## Store: Qdrant Edge vs the old local mode (`benchmarks/bench_store.py`)",
        "",
        f"{machine()}; {load_before} at the start, {load_after} at the end. 768-d clustered unit vectors, "
        "one music vector per point (half abc, half mtf), ingest-like payloads; warm searches one at a time, "
        "k=10; the filter matches ~0.5% of the points.",
        "",
        body,
        "",
        f"Searches use `hnsw_ef={HNSW_EF}` (clamp2-engine's default; Qdrant's is 100). The trade-off, one vector "
        "name, 100 queries:",
        "",
        table(["points", "hnsw_ef", "p50 ms", "recall@10"], sweep),
        "",
        "Peak RSS counts the memory-mapped segment files the kernel may page out; anonymous memory at the end: "
        + ", ".join(f"{r['points']:,}: {r['anon_rss_mib']:,.0f} MiB" for r in rows if "anon_rss_mib" in r)
        + ".",
        "",
    ]
    edge = {r["points"]: r for r in rows if r["engine"] == "edge"}
    local = [r for r in rows if r["engine"] == "local-mode"]
    if local and local[0]["points"] in edge:
        e, lm = edge[local[0]["points"]], local[0]
        lines.append(
            f"At {lm['points']:,} points Qdrant Edge searches {lm['p50_ms'] / e['p50_ms']:.0f}x faster than local mode "
            f"({lm['filter_p50_ms'] / e['filter_p50_ms']:.0f}x with the filter, {lm['any_p50_ms'] / e['any_p50_ms']:.0f}x "
            f"with `any`) and writes {e['upsert_per_s'] / lm['upsert_per_s']:.1f}x faster."
        )
    if edge:
        big = edge[max(edge)]
        lines.append(
            f"A warm text query with a full-size text tower (XLM-R base shape, one thread): encoding p50 {encode:.1f} ms; "
            f"with the {big['points']:,}-point search p50 {big['p50_ms']:.1f} ms: **{encode + big['p50_ms']:.0f} ms** to hits."
        )
    md = "\n".join(lines)
    print(md)
    if not no_write:
        write_section("store", md)


if __name__ == "__main__":
    main()
