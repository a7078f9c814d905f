"""Ingest throughput on tests/fixtures/bench-corpus and warm search latency against 20,000 stored points.

Run: ``python benchmarks/bench_search.py [--points 20000] [--queries 50] [--render] [--no-write]``.
The model is a full-size CLaMP 2 (base M3 and XLM-R towers, 768-d) with random weights, built here;
its tokenizer is XLM-R's when it is available offline, else the parity fixture's (the towers' cost
does not depend on the vocabulary). Prints the figures and writes the ``bench_search`` section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tokenizer check below must not wait for the network
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import machine, table, write_section  # noqa: E402
from clamp2_engine.search.models import load_query_model  # noqa: E402
from clamp2_engine.search.ranking import nearest
from clamp2_engine.store import Point, StoreSpec, open_store, point_id  # noqa: E402
from clamp2_engine.types import VECTORS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BENCH = FIXTURES / "bench-corpus"
FIXTURE = FIXTURES / "clamp2-parity"
QUERIES = [
    "a melancholic waltz for solo piano",
    "a four-part chorale in a minor key",
    "ein fröhliches Volkslied für Chor",
    "一首欢快的民歌",
    "une gigue rapide pour violon",
    "a slow, solemn hymn for organ",
    "lively dance tune in six-eight time",
    "string quartet, first movement, allegro",
]


def build_checkpoint(path: Path) -> Path:
    """A full-size CLaMP 2 checkpoint (default base sizes) with random weights."""
    import torch

    from clamp2_engine.checkpoints import save_checkpoint
    from clamp2_engine.models import CLaMP2Config, CLaMP2Model

    torch.manual_seed(0)
    model = CLaMP2Model(CLaMP2Config())
    return save_checkpoint(path, model.state_dict())


def pick_tokenizer() -> tuple[str, str]:
    """``(text model spec, description)``: XLM-R's tokenizer offline if cached, else the fixture's."""
    try:
        from clamp2_engine.models.factory import load_text_assets

        load_text_assets("FacebookAI/xlm-roberta-base")
        return "FacebookAI/xlm-roberta-base", "XLM-R base tokenizer"
    except Exception:
        return str(
            FIXTURE / "text_model"
        ), "the parity fixture's tiny tokenizer (XLM-R's is not available offline)"


def seed_corpus(root: Path) -> Path:
    """The bench corpus in the seed layout: abc/, mtf/, items.jsonl with the texts as summaries."""
    shutil.copytree(BENCH / "abc", root / "abc")
    shutil.copytree(BENCH / "mtf", root / "mtf")
    with open(root / "items.jsonl", "w", encoding="utf-8") as fh:
        for abc in sorted((BENCH / "abc").glob("*.abc")):
            text = (BENCH / "txt" / f"{abc.stem}.txt").read_text(encoding="utf-8").strip()
            item = {
                "title": abc.stem,
                "summary_en": text,
                "filepaths": [f"abc/{abc.name}", f"mtf/{abc.stem}.mtf"],
            }
            fh.write(json.dumps(item) + "\n")
    return root


def ingest_run(tmp: Path, label: str, corpus: Path, model, *, render: bool, jobs: int) -> dict:
    from clamp2_engine.ingest.corpus import discover
    from clamp2_engine.ingest.pipeline import ingest_corpus

    with open_store(StoreSpec(path=tmp / f"store-{label}")) as store:
        found = discover(corpus)
        report = ingest_corpus(store, "bench", found, model, render=render, jobs=jobs, progress=False)
    c = report.counts
    vectors = sum(c[f"vectors_{v}"] for v in VECTORS)
    row = {
        "run": label,
        "pieces": c["points"],
        "vectors": vectors,
        "failed": c["failed"],
        "seconds": round(report.seconds, 1),
        "pieces/s": round(c["points"] / report.seconds, 2),
    }
    print(row, flush=True)
    return row


def fill(store, n: int, dim: int, identity):
    rng = np.random.default_rng(0)
    coll = store.ensure("bench20k", identity, {})
    for start in range(0, n, 1000):
        points = []
        for i in range(start, min(n, start + 1000)):
            vecs = {"abc": rng.standard_normal(dim), "mtf": rng.standard_normal(dim)}
            if i % 2 == 0:
                vecs["text"] = rng.standard_normal(dim)
            payload = {
                "piece_id": f"bench:{i}",
                "corpus": "bench",
                "unit": f"p{i:05d}.abc",
                "title": f"Piece {i}",
                "composer": f"Composer {i % 50}",
                "source": f"p{i:05d}.abc",
                "formats": ["abc"],
                "modalities": list(vecs),
                "metadata": {"genres": ["Folk" if i % 3 else "Jazz"]},
            }
            points.append(Point(point_id(f"bench:{i}"), vecs, payload))
        coll.upsert(points)
    coll.optimize()
    return coll


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def search_latency(
    tmp: Path, ckpt: Path, text_model: str, n_points: int, n_queries: int
) -> tuple[list, dict]:
    import torch

    from clamp2_engine.pretrained import CLaMP2

    store = tmp / "store-20k"
    opened = open_store(StoreSpec(path=store))
    t = time.perf_counter()
    identity = CLaMP2.from_pretrained(ckpt, text_model, towers=("text",)).identity
    coll = fill(opened, n_points, identity.embed_dim, identity)
    fill_s = time.perf_counter() - t
    t = time.perf_counter()
    model = load_query_model(coll.record, "text", "bench20k", model=ckpt, text_model=text_model)
    load_s = time.perf_counter() - t
    runtime = model.encoder.runtime
    assert runtime.has_text, "a text search loads the text tower"
    assert not runtime.has_music, "a text search must load the text tower only"
    rows = []
    p50 = {}
    for threads in (torch.get_num_threads(), 1):
        torch.set_num_threads(threads)
        total, encode, search_any, search_abc, cpu = [], [], [], [], []
        for i in range(5 + n_queries):  # 5 warm-up queries
            q = QUERIES[i % len(QUERIES)]
            c0 = time.process_time()
            t0 = time.perf_counter()
            vec = model.encode_text(q)
            t1 = time.perf_counter()
            c1 = time.process_time()
            hits = nearest(coll, vec, modality="any", limit=10)[0]
            t2 = time.perf_counter()
            assert len(hits) == 10
            if i >= 5:
                total.append(t2 - t0)
                encode.append(t1 - t0)
                cpu.append(c1 - c0)
                search_any.append(t2 - t1)
                t3 = time.perf_counter()
                nearest(coll, vec, modality="abc", limit=10)
                search_abc.append(time.perf_counter() - t3)
        p50[threads] = pct(total, 50)
        tag = f"torch threads {threads}"
        rows += [
            [
                f"text query -> hits (encode + search, any), {tag}",
                f"{pct(total, 50):.1f}",
                f"{pct(total, 95):.1f}",
            ],
            [f"  encode_text (base text tower), {tag}", f"{pct(encode, 50):.1f}", f"{pct(encode, 95):.1f}"],
            [f"  encode_text CPU time (all threads), {tag}", f"{pct(cpu, 50):.1f}", f"{pct(cpu, 95):.1f}"],
            ["  search, any (abc + mtf fused)", f"{pct(search_any, 50):.1f}", f"{pct(search_any, 95):.1f}"],
            ["  search, one vector (abc)", f"{pct(search_abc, 50):.1f}", f"{pct(search_abc, 95):.1f}"],
        ]
    filtered = []
    flt = ["composer=Composer 7"]
    vec = model.encode_text(QUERIES[0])
    for _ in range(min(10, n_queries)):
        t0 = time.perf_counter()
        nearest(coll, vec, modality="any", limit=10, filters=flt)
        filtered.append(time.perf_counter() - t0)
    rows.append(
        [
            "search with a payload filter (keyword index), any",
            f"{pct(filtered, 50):.1f}",
            f"{pct(filtered, 95):.1f}",
        ]
    )
    opened.close()
    # one-shot CLI search: opening the store, loading the text tower, one query
    t = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "clamp2_engine",
            "search",
            QUERIES[0],
            "-c",
            "bench20k",
            "--qdrant-path",
            str(store),
            "--model",
            str(ckpt),
            "--text-model",
            text_model,
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    oneshot = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"one-shot search failed: {proc.stderr[-2000:]}")
    extra = {
        "fill_s": fill_s,
        "load_s": load_s,
        "oneshot_s": oneshot,
        "p50_ms": p50,
        "load_average": os.getloadavg()[0],
    }
    return rows, extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument(
        "--render", action="store_true", help="Also time a plain-folder ingest that renders scores."
    )
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    args = ap.parse_args()
    import torch

    from clamp2_engine.pretrained import CLaMP2

    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        t = time.perf_counter()
        ckpt = build_checkpoint(tmp / "clamp2-base-random.pth")
        text_model, tok_note = pick_tokenizer()
        print(
            f"built a random base checkpoint in {time.perf_counter() - t:.0f} s; tokenizer: {tok_note}",
            flush=True,
        )
        ingest_rows = []
        if not args.skip_ingest:
            model = CLaMP2.from_pretrained(ckpt, text_model)
            jobs = os.cpu_count() or 1
            seed = seed_corpus(tmp / "seed")
            ingest_rows.append(
                ingest_run(
                    tmp, "seed layout (abc + mtf + text), base model", seed, model, render=False, jobs=jobs
                )
            )
            plain = tmp / "plain"
            shutil.copytree(BENCH / "abc", plain / "abc")
            shutil.copytree(BENCH / "mtf", plain / "mtf")
            ingest_rows.append(
                ingest_run(
                    tmp,
                    "plain folder (120 files, --no-render), base model",
                    plain,
                    model,
                    render=False,
                    jobs=jobs,
                )
            )
            del model
            if args.render:
                tiny = CLaMP2.from_pretrained(FIXTURE / "checkpoints" / "clamp2.pth", FIXTURE / "text_model")
                ingest_rows.append(
                    ingest_run(
                        tmp,
                        "plain folder, scores rendered to MIDI, tiny model",
                        plain,
                        tiny,
                        render=True,
                        jobs=jobs,
                    )
                )
        rows, extra = search_latency(tmp, ckpt, text_model, args.points, args.queries)
    print(json.dumps(extra), flush=True)
    for r in rows:
        print(r)
    md = [
        f"Machine: {machine()}. Embedded store: Qdrant Edge. Model: full-size CLaMP 2 with random weights "
        f"(base M3 + XLM-R towers, 768-d); tokenizer: {tok_note}."
    ]
    if ingest_rows:
        md += [
            "",
            f"**Ingest** of `tests/fixtures/bench-corpus` (60 pieces: interleaved ABC, MTF, one-line texts), "
            f"model already loaded, {os.cpu_count()} worker processes for conversion:",
            "",
            table(
                ["run", "pieces", "vectors", "failed", "seconds", "pieces/s"],
                [
                    [r[k] for k in ("run", "pieces", "vectors", "failed", "seconds", "pieces/s")]
                    for r in ingest_rows
                ],
            ),
        ]
    md += [
        "",
        f"**Search**, warm (store open, text tower loaded once), one query at a time, top 10, over "
        f"{args.points:,} points with random 768-d `abc` / `mtf` vectors (and `text` on half); "
        f"{args.queries} queries after 5 warm-up ones:",
        "",
        table(["step", "p50 ms", "p95 ms"], rows),
        "",
        "Target: warm text query to results p50 <= 100 ms on CPU: "
        + ", ".join(
            f"**{v:.1f} ms** with {k} torch thread(s) ({'met' if v <= 100 else 'missed'})"
            for k, v in extra["p50_ms"].items()
        )
        + f". `search` and `shell` encode a text query with 1 thread (`CLAMP2_QUERY_THREADS`). Load average "
        f"during the run: {extra['load_average']:.1f} on {os.cpu_count()} cores (the machine was shared with "
        "other work), so wall times are inflated; the CPU time of a 1-thread encode is close to its latency on "
        "an idle core. Loading the text tower alone took "
        + f"{extra['load_s']:.1f} s (`search` never loads the music tower for a text query). A one-shot "
        f"`clamp2-engine search` (new process: imports, opening the {args.points:,}-point embedded store, "
        f"loading the text tower, one query) took {extra['oneshot_s']:.1f} s; filling the store took "
        f"{extra['fill_s']:.0f} s.",
    ]
    text = "\n".join(md)
    print(text)
    if not args.no_write:
        write_section("bench_search", "## Index and search (`bench_search.py`)\n\n" + text)


if __name__ == "__main__":
    main()
