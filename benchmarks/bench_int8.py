"""What int8 costs in retrieval: a 20k-piece collection searched with fp32 and with int8, side by side.

    python benchmarks/bench_int8.py [--points 20000] [--queries 400] [--no-write]

A trained model (the packaged ``demo`` CLaMP 2) is exported to ONNX twice, fp32 and int8 (ONNX Runtime
dynamic quantization, as ``export onnx --int8`` does). Each export embeds the same 20k music excerpts
(random bar ranges of the bench corpus's interleaved ABC and line ranges of its MTF: distinct pieces of
music) into its own Qdrant Edge collection, and its own queries: the corpus's 60 texts, held-out music
excerpts. Reported: the cosine between each item's fp32 and int8 vectors, and how often the int8 search
returns fp32's results: top-10 overlap and fp32's top hit within int8's top 10, both by exact cosine
and through the collections (HNSW). Writes the ``bench_int8`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clamp2_engine.search.ranking import nearest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import embedding as E  # noqa: E402
from benchmarks._report import machine, table, write_section  # noqa: E402


def excerpts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct excerpts: half ABC (the header and a range of bar lines), half MTF (the header
    line and a range of message lines)."""
    rng = random.Random(seed)
    pieces = {
        sub: [f.read_text(encoding="utf-8").splitlines() for f in E.corpus()[sub]] for sub in ("abc", "mtf")
    }
    seen: set[tuple[str, int, int, int]] = set()
    out: list[str] = []
    while len(out) < n:
        sub = "abc" if len(out) % 2 == 0 else "mtf"
        i = rng.randrange(len(pieces[sub]))
        lines = pieces[sub][i]
        head = next(k for k, line in enumerate(lines) if line.startswith("[V:")) if sub == "abc" else 1
        body = len(lines) - head
        length = rng.randint(1, min(16 if sub == "abc" else 64, body))
        start = rng.randrange(body - length + 1)
        if (sub, i, start, length) in seen:
            continue
        seen.add((sub, i, start, length))
        out.append("\n".join(lines[:head] + lines[head + start : head + start + length]) + "\n")
    return out


def top10(queries: np.ndarray, items: np.ndarray) -> np.ndarray:
    unit = items / np.linalg.norm(items, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(q @ unit.T), axis=1)[:, :10]


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean top-10 overlap, and the share of queries whose ``a`` top hit is in ``b``'s top 10."""
    overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b, strict=True)])
    top1 = np.mean([x[0] in set(y) for x, y in zip(a, b, strict=True)])
    return float(overlap), float(top1)


def collection_top10(store, name: str, identity, items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The queries' top 10 through a Qdrant Edge collection of ``items`` (HNSW index built)."""
    from clamp2_engine.store import Point, point_id

    coll = store.ensure(name, identity, {"model": "demo"})
    for start in range(0, len(items), 2000):
        coll.upsert(
            [
                Point(point_id(str(i)), {"abc": items[i]}, {"n": i})
                for i in range(start, min(start + 2000, len(items)))
            ]
        )
    coll.optimize()
    hits = nearest(coll, queries, modality="abc", limit=10, with_payload=True)
    return np.array([[h.payload["n"] for h in row] for row in hits])


def main(argv: list[str] | None = None) -> None:
    from clamp2_engine import CLaMP2
    from clamp2_engine.exporters.onnx import export_onnx
    from clamp2_engine.store import StoreSpec, open_store

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=400, help="music queries (plus the 60 texts)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    music = excerpts(args.points + args.queries)
    items, music_queries = music[: args.points], music[args.points :]
    texts = [f.read_text(encoding="utf-8") for f in E.corpus()["txt"]]
    work = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    try:
        vectors, seconds, identity = {}, {}, None
        for precision in ("fp32", "int8"):
            folder = work / precision
            export_onnx("demo", folder, fp16=False, int8=precision == "int8", verify=False)
            model = CLaMP2.from_pretrained(backend="onnx", onnx_dir=folder, device="cpu")
            identity = identity or model.identity
            t0 = time.perf_counter()
            vectors[precision] = (
                model.encode_music(items),
                model.encode_music(music_queries),
                model.encode_text(texts),
            )
            seconds[precision] = time.perf_counter() - t0
            print(
                f"{precision}: embedded {len(music) + len(texts)} items in {seconds[precision]:.0f} s",
                flush=True,
            )
        cos = np.concatenate(
            [
                np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
                for a, b in zip(vectors["fp32"], vectors["int8"], strict=True)
            ]
        )
        rows = []
        with open_store(StoreSpec(path=work / "edge")) as store:
            hnsw = {
                p: [collection_top10(store, p, identity, vectors[p][0], q) for q in vectors[p][1:]]
                for p in ("fp32", "int8")
            }
        for k, kind in enumerate(("music queries", "text queries")):
            exact = agreement(
                top10(vectors["fp32"][k + 1], vectors["fp32"][0]),
                top10(vectors["int8"][k + 1], vectors["int8"][0]),
            )
            through = agreement(hnsw["fp32"][k], hnsw["int8"][k])
            n = len(vectors["fp32"][k + 1])
            rows.append(
                [kind, n, f"{exact[0]:.3f}", f"{exact[1]:.3f}", f"{through[0]:.3f}", f"{through[1]:.3f}"]
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(
        [
            "## int8: cosine and retrieval agreement (`benchmarks/bench_int8.py`)",
            "",
            f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end. Model: the packaged `demo` "
            f"CLaMP 2 (trained), exported to ONNX at fp32 and int8 (dynamic quantization). Collection: {len(items)} "
            "distinct music excerpts of the bench corpus (half ABC bar ranges, half MTF line ranges); each "
            "precision embeds the collection and its own queries. Cosine between an item's fp32 and int8 vectors, "
            f"over all {len(cos)} items: worst {cos.min():.6f}, mean {cos.mean():.6f}, 1st percentile "
            f"{np.percentile(cos, 1):.6f}. Near-duplicates abound (excerpts of the same pieces overlap), so "
            "a tiny change of score reorders close neighbours: the overlap counts those swaps. Speed: "
            "`bench_embed.py` (the full-size model).",
            "",
            table(
                [
                    "queries",
                    "n",
                    "top-10 overlap (exact)",
                    "fp32 top hit in int8 top 10 (exact)",
                    "top-10 overlap (Qdrant Edge HNSW)",
                    "fp32 top hit in int8 top 10 (HNSW)",
                ],
                rows,
            ),
        ]
    )
    print(text)
    if not args.no_write:
        write_section("bench_int8", text)


if __name__ == "__main__":
    main()
