"""Time retrieval metrics on 10,000 synthetic pairs of 768-dim features (and a linear-probe epoch).

Run: ``python benchmarks/bench_eval.py [--pairs 10000] [--dim 768] [--no-write]``. Prints the figures and
writes the ``bench_eval`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import machine, table, write_section  # noqa: E402
from clamp2_engine import probe as P  # noqa: E402
from clamp2_engine.evaluate import evaluate_folders, retrieval_metrics  # noqa: E402


def timed(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def reference_loop_seconds(query: np.ndarray, ref: np.ndarray, n_queries: int) -> float:
    """The reference loop (semantic_search_metrics.py) for ``n_queries`` queries; seconds per query."""
    keys = [f"k{i}" for i in range(len(ref))]
    q_feats, r_feats = dict(zip(keys, query, strict=True)), dict(zip(keys, ref, strict=True))
    t = time.perf_counter()
    for idx, key in enumerate(keys[:n_queries]):
        q = torch.tensor(q_feats[key]).unsqueeze(dim=0)
        refs = torch.tensor(np.array([r_feats[k] for k in keys]))
        sims = torch.cosine_similarity(q, refs)
        order = sorted(enumerate(sims.tolist()), key=lambda x: (x[1], x[0] == idx), reverse=True)
        [x[0] for x in order].index(idx)
    return (time.perf_counter() - t) / n_queries


def probe_epoch_seconds(tmp: Path, n_files: int, dim: int, batch_size: int) -> float:
    rng = np.random.default_rng(0)
    folder = tmp / "probe"
    if not folder.exists():
        folder.mkdir()
        for i in range(n_files):
            length = int(rng.integers(64, 512))
            np.save(folder / f"c{i % 4}_{i}.npy", rng.standard_normal((1, length, dim)).astype(np.float32))
    files, _ = P.scan_features([folder])
    cfg = P.ProbeConfig(epochs=2, patience=10, batch_size=batch_size, device="cpu")
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(*_):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    P.train_probe(files, None, cfg, on_epoch=tick)
    return times[-1]  # the second epoch: features already cached in memory


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--reference-queries", type=int, default=20)
    ap.add_argument("--probe-files", type=int, default=200)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    n, dim = args.pairs, args.dim
    torch.set_num_threads(max(1, torch.get_num_threads()))

    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((n, dim)).astype(np.float32)
    query = (ref + rng.standard_normal((n, dim)) * 6.0).astype(np.float32)

    rows = []
    t_ref, m = timed(lambda: retrieval_metrics(query, ref, "reference"))
    rows.append([f"retrieval_metrics, {n:,} pairs, ties=reference", f"{t_ref:.2f} s"])
    t_pes, _ = timed(lambda: retrieval_metrics(query, ref, "pessimistic"))
    rows.append([f"retrieval_metrics, {n:,} pairs, ties=pessimistic", f"{t_pes:.2f} s"])

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name, mat in (("q", query), ("r", ref)):
            (tmp / name).mkdir()
            for i, row in enumerate(mat):
                np.save(tmp / name / f"item{i:05d}.npy", row[None])
        t_folders, res = timed(lambda: evaluate_folders(tmp / "q", tmp / "r"), repeat=1)
        assert res.metrics["pairs"] == n
        assert res.metrics["MRR"] == m["MRR"]
        rows.append([f"evaluate_folders: load {2 * n:,} .npy files + metrics", f"{t_folders:.2f} s"])

        per_query = reference_loop_seconds(query, ref, args.reference_queries)
        rows.append(
            [
                f"reference loop (semantic_search_metrics.py), measured on {args.reference_queries} queries, "
                f"extrapolated to {n:,}",
                f"{per_query * n:.0f} s ({per_query * n / t_ref:.0f}x slower)",
            ]
        )

        for bs in (1, 16):
            t_epoch = probe_epoch_seconds(tmp, args.probe_files, dim, bs)
            rows.append(
                [
                    f"linear probe, one epoch of {int(args.probe_files * 0.8)} raw [L<=512, {dim}] files, batch {bs}, CPU",
                    f"{t_epoch:.2f} s",
                ]
            )

    metrics_line = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
    md = "\n".join(
        [
            "## Evaluation (`benchmarks/bench_eval.py`)",
            "",
            f"Synthetic {dim}-dim features, query = reference + Gaussian noise (σ 6): {metrics_line}.",
            "",
            table(["task", "time"], rows),
            "",
            f"Machine: {machine()}; 1-minute load average {load_before:.1f} at the start "
            "(the machine is shared: figures vary with other work).",
        ]
    )
    print(md)
    if not args.no_write:
        write_section("bench_eval", md)


if __name__ == "__main__":
    main()
