"""Finding music by name: semantic, lexical and hybrid search compared, and what hybrid costs.

Quality, on the demo collection (music21's Bach chorales, Essen folk songs, Irish tunes, Palestrina, ...,
ingested by `clamp2-engine ingest --model demo`, as `clamp2-engine demo` does):
- known-item title queries: every distinct title typed as a person would (lower case, no punctuation:
  "bwv 102 7", "the protestant boys"); MRR@10 and precision@5 (the piece, or any piece of that title);
- composer queries ("bach", "palestrina", ...): MRR@10 and precision@5 (hits by that composer);
- known items in many scripts (``WORLD``: titles and composers in 14 scripts, queried by part of a name);
- descriptive queries, in English, German, French and Spanish, made from a piece's fields ("A jig in 6/8
  time", "Ein Choral von J.S. Bach für vier Stimmen"): precision@10 of hits sharing its genre and
  composer, to check that hybrid does not make meaning-only queries worse.
Latency, on Qdrant Edge at ``--points`` (100k) synthetic points (768-d clustered vectors, half abc, half
mtf; titles, composers and summaries from a vocabulary), HNSW built: a warm search's p50/p95, semantic
(``any``) against hybrid (the same vector and 2-3 words), one query at a time, the query's encoding
excluded (the same in both modes).

    python benchmarks/bench_hybrid.py                   # about 10 minutes on 2 cores
    python benchmarks/bench_hybrid.py --points 20000 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, table, write_section  # noqa: E402
from benchmarks.bench_store import vectors  # noqa: E402
from clamp2_engine.search import Query, SearchSession  # noqa: E402
from clamp2_engine.search.fusion import RRF_K, WEIGHTS  # noqa: E402
from clamp2_engine.search.ranking import hybrid, nearest  # noqa: E402
from clamp2_engine.store import Point, StoreSpec, open_store, point_id  # noqa: E402
from clamp2_engine.store.fields import fold  # noqa: E402

MODES = ("semantic", "lexical", "hybrid")
LANGUAGES = ("English", "German", "French", "Spanish")


def typed(text: str) -> str:
    """A title as a person types it: lower case, words only."""
    return " ".join(re.findall(r"[^\W_]+", fold(text)))


def demo_collection(work: Path) -> StoreSpec:
    """The demo pieces ingested with the demo model into an embedded store under ``work``."""
    from clamp2_engine.ingest.demo import prepare_demo_corpus

    corpus = prepare_demo_corpus(work / "music21", jobs=os.cpu_count() or 1).root
    store = work / "edge"
    command = [
        sys.executable, "-m", "clamp2_engine", "ingest", str(corpus), "-c", "demo", "--corpus-name", "music21",
        "--model", "demo", "--no-render", "--allow-failures", "--json", "--qdrant-path", str(store),
    ]  # fmt: skip
    env = {**os.environ, "CLAMP2_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"ingest failed: {proc.stderr[-2000:]}")
    return StoreSpec(path=store)


def metrics(ranked: list[list[bool]], k: int = 10, p: int = 5) -> tuple[float, float]:
    """MRR@k and precision@p of relevance lists."""
    mrr = np.mean([next((1 / (i + 1) for i, r in enumerate(row[:k]) if r), 0.0) for row in ranked])
    prec = np.mean([sum(row[:p]) / p for row in ranked])
    return float(mrr), float(prec)


SWEEP_K = (1, 2, 3, 5, 60)
SWEEP_W = (1.0, 1.25, 1.5, 2.0)


def quality(spec: StoreSpec, limit: int | None) -> dict:
    """The three modes on the demo collection, and hybrid's fusion constant and word weight swept."""
    import clamp2_engine.search.fusion as collection_module
    from clamp2_engine.ingest.music21_corpus import describe

    out: dict = {}
    with open_store(spec) as store:
        session = SearchSession.open(store, "demo")
        payloads = {p.id: p.payload for page in session.collection.scroll() for p in page}
        by_title: dict[str, set[str]] = {}
        for pid, pl in payloads.items():
            if pl.get("title"):
                by_title.setdefault(typed(pl["title"]), set()).add(pid)
        titles = sorted(t for t in by_title if t)[:limit]
        names = [typed(str(pl.get("composer"))).split() for pl in payloads.values() if pl.get("composer")]
        counts: dict[str, int] = {}
        for words in names:
            if words and words[-1].isalpha() and len(words[-1]) > 2:
                counts[words[-1]] = counts.get(words[-1], 0) + 1
        composers = sorted(c for c, n in counts.items() if n >= 3)
        pieces = sorted(payloads)[:: max(1, len(payloads) // 40)]
        described = [
            (describe(payloads[pid]["metadata"], lang), payloads[pid]) for pid in pieces for lang in LANGUAGES
        ]
        out["counts"] = {
            "pieces": len(payloads),
            "titles": len(titles),
            "composers": composers,
            "described": len(described),
        }
        vectors = {t: session.text_vector(t) for t in {*titles, *composers, *(d for d, _ in described)}}

        def same_kind(a: dict, b: dict) -> bool:
            ga, gb = a["metadata"].get("genres"), b["metadata"].get("genres")
            return ga == gb and a.get("composer") == b.get("composer")

        def measure(mode: str, weights: tuple[float, float] | None = None) -> dict:
            def run(text: str) -> list:
                return session.find(Query(text=text, mode=mode, weights=weights), vectors[text]).hits

            started = time.perf_counter()
            t_rows = [[h.id in by_title[t] for h in run(t)] for t in titles]
            c_rows = [[c in typed(str(h.payload.get("composer"))) for h in run(c)] for c in composers]
            d_rows = [[same_kind(h.payload, pl) for h in run(text)] for text, pl in described]
            return {
                "title": metrics(t_rows),
                "composer": metrics(c_rows),
                "described_p10": metrics(d_rows, p=10)[1],
                "ms": (time.perf_counter() - started) * 1000 / (len(titles) + len(composers) + len(d_rows)),
            }

        for mode in MODES:
            out[mode] = measure(mode)
        chosen = collection_module.RRF_K
        out["sweep"] = []
        try:
            for k in SWEEP_K:
                collection_module.RRF_K = k
                for w in SWEEP_W:
                    m = measure("hybrid", (1.0, w))
                    out["sweep"].append((k, w, m["title"][0], m["composer"][0], m["described_p10"]))
        finally:
            collection_module.RRF_K = chosen
    return out


# known items in many scripts: (title, composer, [queries as people type them: part of a name])
WORLD = [
    ("茉莉花", "中国民歌", ["茉莉", "茉莉花", "中国民歌"]),  # Chinese
    ("梁祝", "何占豪", ["梁祝", "何占豪"]),
    ("さくらさくら", "日本古謡", ["さくら", "日本古謡"]),  # Japanese
    ("荒城の月", "滝廉太郎", ["荒城", "滝廉太郎"]),
    ("아리랑", "경기 민요", ["아리랑", "경기"]),  # Korean
    ("도라지 타령", "민요", ["도라지"]),
    ("ลาวดวงเดือน", "พระองค์เจ้าเพ็ญพัฒนพงศ์", ["ลาวดวงเดือน", "ดวงเดือน"]),  # Thai
    ("ລຳວົງ", "ເພງພື້ນເມືອງ", ["ລຳວົງ"]),  # Lao
    ("ផ្កាស្លា", "ស៊ីន ស៊ីសាមុត", ["ផ្កាស្លា"]),  # Khmer
    ("မြန်မာ့သံ", "ရိုးရာ", ["မြန်မာ့သံ"]),  # Myanmar
    ("Калинка", "Иван Ларионов", ["калинка", "ларионов"]),  # Cyrillic
    ("Очи чёрные", "Флориан Герман", ["очи черные"]),
    ("Τα παιδιά του Πειραιά", "Μάνος Χατζιδάκις", ["πειραια", "χατζιδακις"]),  # Greek
    ("لونغا نهاوند", "رياض السنباطي", ["لونغا", "السنباطي"]),  # Arabic
    ("הבה נגילה", "אברהם צבי אידלסון", ["הבה נגילה", "אידלסון"]),  # Hebrew
    ("वन्दे मातरम्", "यदुनाथ भट्टाचार्य", ["वन्दे मातरम्", "भट्टाचार्य"]),  # Devanagari
    ("სულიკო", "ვარინკა წერეთელი", ["სულიკო"]),  # Georgian
    ("Üsküdar'a gider iken", "Anonim", ["uskudar"]),  # Turkish
    ("Bèo dạt mây trôi", "Dân ca Quan họ", ["beo dat may troi", "quan ho"]),  # Vietnamese
    ("Ĉu vi volas danci", "Zamenhof-Kantaro", ["danci"]),  # Esperanto
]


def world_folder(root: Path) -> Path:
    """One ABC file per known item, its title and composer in its own script, its tune its own."""
    root.mkdir(parents=True, exist_ok=True)
    notes = "CDEFGABcdefgab"
    for i, (title, composer, _queries) in enumerate(WORLD):
        tune = " ".join("".join(notes[(i * 3 + j * k) % len(notes)] for j in range(4)) for k in range(1, 9))
        (root / f"world_{i:02d}.abc").write_text(
            f"X:1\nT:{title}\nC:{composer}\nM:4/4\nL:1/8\nK:C\n{tune} |]\n", encoding="utf-8"
        )
    return root


def multilingual(spec: StoreSpec, work: Path) -> dict:
    """MRR@10 of each mode for the known items of :data:`WORLD`, ingested beside the demo pieces."""
    folder = world_folder(work / "world")
    command = [
        sys.executable, "-m", "clamp2_engine", "ingest", str(folder), "-c", "demo", "--corpus-name", "world",
        "--no-render", "--json", "--qdrant-path", str(spec.path),
    ]  # fmt: skip
    env = {**os.environ, "CLAMP2_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"ingest failed: {proc.stderr[-2000:]}")
    out: dict = {}
    with open_store(spec) as store:
        session = SearchSession.open(store, "demo")
        queries = [(q, title) for title, _c, qs in WORLD for q in qs]
        vectors = {q: session.text_vector(q) for q, _t in queries}
        for mode in MODES:
            rows = [
                [h.payload.get("title") == t for h in session.find(Query(text=q, mode=mode), vectors[q]).hits]
                for q, t in queries
            ]
            out[mode] = metrics(rows)[0]
        out["queries"] = len(queries)
        out["scripts"] = 14
    return out


WORDS = [f"w{i}" for i in range(5000)]


def synthetic_payload(i: int, rng: np.random.Generator) -> dict:
    name = "abc" if i % 2 == 0 else "mtf"
    words = lambda n: " ".join(WORDS[j] for j in rng.zipf(1.3, n) % len(WORDS))  # noqa: E731
    return {
        "piece_id": f"bench:{i}",
        "corpus": "bench",
        "unit": f"piece{i}.{name}",
        "title": words(3).title(),
        "composer": f"Composer {i % 200}",
        "source": f"{name}/piece{i}.{name}",
        "metadata": {"genres": ["folk" if i % 3 else "classical"], "meter": "4/4"},
        "summary_en": words(20),
    }


def latency(n: int, n_queries: int, folder: Path) -> dict:
    from benchmarks.bench_store import timed
    from clamp2_engine.store.schema import CollectionRecord

    rng = np.random.default_rng(0)
    vecs = vectors(n, 768)
    out: dict = {"points": n}
    with open_store(StoreSpec(path=folder)) as store:
        model = {"name": "bench", "embed_dim": 768, "kind": "clamp2", "checkpoint_sha256": "0" * 64}
        coll = store.create("bench", CollectionRecord(model, lexical=True))
        started = time.perf_counter()
        for start in range(0, n, 512):
            stop = min(n, start + 512)
            coll.upsert(
                [
                    Point(
                        point_id(f"bench:{i}"),
                        {"abc" if i % 2 == 0 else "mtf": vecs[i]},
                        synthetic_payload(i, rng),
                    )
                    for i in range(start, stop)
                ]
            )
        out["upsert_per_s"] = n / (time.perf_counter() - started)
        started = time.perf_counter()
        coll.optimize()
        out["index_s"] = time.perf_counter() - started
        picks = rng.integers(0, n, n_queries)
        queries = [
            (
                vecs[i] + 0.3 * rng.standard_normal(768).astype(np.float32),
                synthetic_payload(int(i), rng)["title"].lower(),
            )
            for i in picks
        ]
        out["semantic"] = timed(lambda q: nearest(coll, q[0], modality="any", limit=10), queries)[:2]
        out["hybrid"] = timed(lambda q: hybrid(coll, q[0], q[1], modality="any", limit=10), queries)[:2]
        out["lexical"] = timed(lambda q: hybrid(coll, None, q[1], limit=10), queries)[:2]
    return out


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def report(q: dict, lat: dict, loads: tuple[str, str]) -> str:
    rows = [
        [
            m,
            f"{q[m]['title'][0]:.3f}",
            f"{q[m]['title'][1]:.3f}",
            f"{q[m]['composer'][0]:.3f}",
            f"{q[m]['composer'][1]:.3f}",
            f"{q[m]['described_p10']:.3f}",
            f"{q[m]['ms']:.1f}",
        ]
        for m in MODES
    ]
    c = q["counts"]
    sweep = [[k, w, f"{t:.3f}", f"{cm:.3f}", f"{d:.3f}"] for k, w, t, cm, d in q["sweep"]]
    lat_rows = [[m, f"{lat[m][0]:.2f}", f"{lat[m][1]:.2f}"] for m in MODES]
    ratio = lat["hybrid"][0] / lat["semantic"][0]
    return f"""## Hybrid search (bench_hybrid.py)

{machine()}; load average {loads[0]} before, {loads[1]} after.

**Quality** on the demo collection ({c["pieces"]} music21 pieces, `--model demo`, no MTF rendering):
{c["titles"]} distinct titles typed in lower case without punctuation, {len(c["composers"])} composer
queries ({", ".join(c["composers"])}), {c["described"]} descriptions of pieces in English, German,
French and Spanish (relevant: same genres and composer). Searches through `SearchSession`, the query
vectors encoded beforehand (ms per query: the store's part).

{table(["mode", "title MRR@10", "title P@5", "composer MRR@10", "composer P@5", "described P@10", "ms/query"], rows)}

**Words in every language**: {q["world"]["queries"]} queries typed as people type them (part of a title or a
composer's name) for {len(WORLD)} pieces titled in {q["world"]["scripts"]} scripts (Chinese, Japanese,
Korean, Thai, Lao, Khmer, Myanmar, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Georgian, and Latin with
Turkish, Vietnamese and Esperanto letters), ingested beside the demo pieces; MRR@10 (the demo model's
meaning knows little of them; words do the work):

{table(["mode", "MRR@10"], [[m, f"{q['world'][m]:.3f}"] for m in MODES])}

Hybrid's defaults (`RRF_K` {RRF_K}, words weighted {WEIGHTS[1]} against meaning's {WEIGHTS[0]}) come from this
sweep (position p of a side adds `1 / (p / weight + k - 1)`, Qdrant's weighted RRF); larger k flattens
the ranks, so a name's exact match counts for less:

<details><summary>sweep of k and the words' weight</summary>

{table(["k", "words' weight", "title MRR@10", "composer MRR@10", "described P@10"], sweep)}

</details>

**Latency** on Qdrant Edge at {lat["points"]:,} synthetic points (768-d, HNSW built in {lat["index_s"]:.0f} s;
upserts with the lexical vector {lat["upsert_per_s"]:.0f} points/s), one query at a time, store only:

{table(["mode", "p50 ms", "p95 ms"], lat_rows)}

Hybrid p50 is **{ratio:.2f}x** semantic's (one batched request: the abc, mtf and sparse searches, each
side's best 100; fused by weighted RRF in the library; the page's payloads fetched apart).
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--titles", type=int, default=None, help="At most this many title queries.")
    ap.add_argument("--work", type=Path, default=None, help="Keep the demo corpus and stores here.")
    ap.add_argument("--no-write", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    args = ap.parse_args(argv)
    before = load()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        spec = demo_collection(work)
        q = quality(spec, args.titles)
        q["world"] = multilingual(spec, work)
        print(json.dumps(q, indent=1))
        lat = latency(args.points, args.queries, work / f"synthetic-{time.time_ns()}")
        print(json.dumps(lat, indent=1))
    text = report(q, lat, (before, load()))
    print(text)
    if not args.no_write:
        write_section("bench_hybrid", text)


if __name__ == "__main__":
    main()
