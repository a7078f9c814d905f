"""Which text tower answers a query fastest while returning fp32's hits: warm text query -> hits, one core.

    python benchmarks/bench_query.py [--points 20000] [--queries 60] [--work DIR] [--no-write]

A full-size CLaMP 2 with random weights (base XLM-R text tower, 768-d) is exported to ONNX at fp32 and int8
(kept in ``--work`` across runs). Every text tower the engine can load (PyTorch fp32 and bf16, ONNX Runtime
fp32 and int8) encodes the same short queries on one thread and searches the same Qdrant Edge collection of
``--points`` points (random unit vectors per modality, as ``bench_search.py``). Reported per tower: p50 and
p95 of encode + search, and top-10 agreement with PyTorch fp32's hits (the share of fp32's top 10 in the
tower's top 10, averaged over the queries). These figures set the query path's rule
(:meth:`clamp2_engine.loading.LoadOptions.with_cached_export`): the cached fp32 export when there is one (the
fastest tower that keeps agreement >= 0.95), PyTorch otherwise; int8 is opt-in. Writes the ``bench_query``
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from clamp2_engine.search.ranking import nearest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["CLAMP2_ORT_THREADS"] = "1"  # one core, as torch below

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import embedding as E  # noqa: E402
from benchmarks._report import machine, table, write_section  # noqa: E402
from benchmarks.bench_search import QUERIES, fill, pct  # noqa: E402

AGREEMENT = 0.95  # the floor for a faster query tower


def queries(n: int) -> list[str]:
    """``n`` short queries: bench_search's and the first sentences of the bench corpus's texts."""
    texts = [f.read_text(encoding="utf-8").split(".")[0] for f in E.corpus()["txt"]]
    return (QUERIES + texts)[:n]


def towers(ckpt: Path, work: Path) -> dict[str, object]:
    """Every text tower the engine loads, by name (the exports first: they run in processes of their own)."""
    from clamp2_engine import CLaMP2

    exports = {p: E.export(ckpt, work, p) for p in ("fp32", "int8")}
    found = {
        f"torch {d}": CLaMP2.from_pretrained(ckpt, E.TEXT_MODEL, towers=("text",), dtype=d)
        for d in ("fp32", "bf16")
    }
    for p, folder in exports.items():
        found[f"onnx {p}"] = CLaMP2.from_pretrained(backend="onnx", onnx_dir=folder, towers=("text",))
    return found


def measure(
    model, coll, texts: list[str], modality: str = "any"
) -> tuple[list[float], list[float], list[list[str]]]:
    """Encode + search seconds, encode seconds and top-10 ids per query (after 5 warm-up queries)."""
    total, encode, ids = [], [], []
    for i, q in enumerate(texts[:5] + texts):
        t0 = time.perf_counter()
        vec = model.encode_text(q)
        t1 = time.perf_counter()
        hits = nearest(coll, vec, modality=modality, limit=10)[0]
        t2 = time.perf_counter()
        if i >= 5:
            total.append(t2 - t0)
            encode.append(t1 - t0)
            ids.append([h.id for h in hits])
    return total, encode, ids


def agreement(got: list[list[str]], want: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(w)) / max(1, len(w)) for g, w in zip(got, want, strict=True)]))


def main(argv: list[str] | None = None) -> int:
    import torch

    from clamp2_engine.store import StoreSpec, open_store

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--modality", default="any", help="what the queries search (any: abc and mtf fused)")
    ap.add_argument("--work", type=Path, default=None, help="keep the checkpoint and exports here")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-query-"))
    ckpt = E.checkpoint(work)
    found = towers(ckpt, work)
    torch.set_num_threads(1)
    texts = queries(args.queries)
    opened = open_store(StoreSpec(path=work / f"store-{args.points}"))
    try:
        identity = found["torch fp32"].identity
        coll = opened.collection("bench20k") if opened.exists("bench20k") else None
        if coll is None or coll.count() != args.points:
            coll = fill(opened, args.points, identity.embed_dim, identity)
        loads = [os.getloadavg()[0]]
        results = {name: measure(model, coll, texts, args.modality) for name, model in found.items()}
        loads.append(os.getloadavg()[0])
    finally:
        opened.close()
    want = results["torch fp32"][2]
    rows = []
    for name, (total, encode, ids) in results.items():
        agree = agreement(ids, want)
        rows.append(
            [
                name,
                f"{pct(total, 50):.1f}",
                f"{pct(total, 95):.1f}",
                f"{pct(encode, 50):.1f}",
                f"{agree:.3f}",
                "yes" if agree >= AGREEMENT else "no",
            ]
        )
    header = ["text tower", "query p50 ms", "query p95 ms", "encode p50 ms", "top-10 agreement", ">= 0.95"]
    text = "\n".join(
        [
            "## Warm text query on one core, per text tower (`benchmarks/bench_query.py`)",
            "",
            f"Machine: {machine()}; load average {min(loads):.1f}-{max(loads):.1f}. Model: CLaMP 2 of the "
            f"released shape (XLM-R base text tower), random weights. {args.points:,} points in Qdrant Edge "
            f"(random vectors), {len(texts)} short queries (modality {args.modality}, top 10), one thread "
            "(`torch.set_num_threads(1)`, `CLAMP2_ORT_THREADS=1`). Agreement: the share of PyTorch fp32's top "
            "10 in the tower's top 10, averaged.",
            "",
            table(header, rows),
            "",
            "The query path of `search`, `shell` and `serve` follows these figures: it uses the model's cached "
            "fp32 export (written by `clamp2-engine export onnx`) when there is one, PyTorch at `auto` otherwise; "
            "an int8 export is used only when asked for (`--backend onnx --onnx-dir`). `collections info` and "
            "`/healthz` say which.",
        ]
    )
    print(text)
    if not args.no_write:
        write_section("bench_query", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
