"""Convert music21's bundled corpus to interleaved ABC and report, per source kind, how much converts,
how fast, and why the rest fails; then time in-process conversion against one subprocess per file.

Run: ``python benchmarks/bench_convert.py [--kinds musicxml,abc,music21] [--limit N] [--jobs 2]
[--compare-files 120] [--out DIR] [--from-log LOG [--rerun KINDS]] [--no-write]``. The whole corpus
(~650 MusicXML files, ~13,000 ABC tunes, ~1,400 Humdrum/RomanText files) takes 45-60 minutes on 2
cores; ``--limit`` caps the files per kind; ``--from-log`` takes the results of a previous run's
output (``--rerun`` names kinds to convert again).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if "--code" in sys.argv[:-1]:  # another checkout of the engine, for before/after figures (real_corpus.py)
    sys.path.insert(0, sys.argv[sys.argv.index("--code") + 1])

from benchmarks._report import machine, table, write_section  # noqa: E402
from clamp2_engine.music.convert import convert_tree  # noqa: E402
from clamp2_engine.music.convert.abctools import interleave  # noqa: E402

KINDS = ("musicxml", "abc", "music21")
LABEL = {
    "musicxml": "MusicXML (.xml .mxl .musicxml)",
    "abc": "ABC tunes (.abc books)",
    "music21": "Humdrum and others via music21 (.krn .rntxt)",
}


def corpus_root() -> Path:
    from music21 import corpus

    root = corpus.getPaths()[0]
    while root.name != "corpus":
        root = root.parent
    return root


def reason_key(record: dict) -> str:
    reason = record["reason"].split(" (fallbacks failed")[0]
    return f"{record['stage']}: {reason[:90]}"


def run_kind(root: Path, out: Path, kind: str, jobs: int, limit: int | None) -> dict:
    report = convert_tree(
        root,
        out / kind,
        "abc",
        jobs=jobs,
        overwrite=True,
        kinds={kind},
        limit=limit,
        progress=sys.stderr.isatty(),
    )
    stats = report.by_kind.get(kind, Counter())
    errors_file = out / kind / "errors.jsonl"
    records = (
        [json.loads(line) for line in errors_file.read_text().splitlines()] if errors_file.exists() else []
    )
    notes = {k: v for k, v in stats.items() if k not in ("items", "converted", "failed", "ms", "worker_ms")}
    return {
        "kind": kind,
        "items": stats["items"],
        "converted": stats["converted"],
        "failed": stats["failed"],
        "seconds": report.summary.elapsed,
        "reasons": Counter(reason_key(r) for r in records).most_common(5),
        "notes": notes,
        "slowest": report.slowest[:3],
    }


def count_files(root: Path, kind: str, limit: int | None) -> int:
    from clamp2_engine.music.convert.batch import plan

    with tempfile.TemporaryDirectory() as tmp:
        tasks, _, failures = plan(root, tmp, "abc", kinds={kind}, limit=limit)
    return len({t.source for t in tasks} | {str(p) for p, _, _ in failures})


def compare_subprocess(root: Path, jobs: int, n_files: int) -> dict:
    """xml -> interleaved ABC for the first ``n_files`` MusicXML files: our in-process workers against
    the reference's way (``python xml2abc.py -d 8 -x FILE`` in a new process per file, ``jobs`` at a
    time, then the interleaving); also counts the files whose two outputs are byte-identical."""
    import abctoolkit

    from clamp2_engine.music.convert.batch import plan

    script = str(Path(abctoolkit.__file__).parent / "xml2abc.py")

    def reference(path: str) -> str | None:
        proc = subprocess.run(
            [sys.executable, script, "-d", "8", "-x", path], capture_output=True, timeout=600
        )
        try:
            return interleave(proc.stdout.decode("utf-8")) if proc.stdout else None
        except Exception:
            return None

    with tempfile.TemporaryDirectory() as tmp:
        tasks, _, _ = plan(root, Path(tmp) / "ours", "abc", kinds={"musicxml"}, limit=n_files)
        start = time.perf_counter()
        report = convert_tree(root, Path(tmp) / "ours", "abc", jobs=jobs, kinds={"musicxml"}, limit=n_files)
        ours = time.perf_counter() - start
        start = time.perf_counter()
        with ThreadPoolExecutor(jobs) as pool:
            refs = list(pool.map(reference, [t.source for t in tasks]))
        theirs = time.perf_counter() - start
        identical = sum(
            ref is not None and Path(t.out).is_file() and Path(t.out).read_text(encoding="utf-8") == ref
            for t, ref in zip(tasks, refs, strict=True)
        )
    return {
        "files": len(tasks),
        "jobs": jobs,
        "ours_s": ours,
        "ours_ok": report.summary.counts["converted"],
        "subprocess_s": theirs,
        "subprocess_ok": sum(r is not None for r in refs),
        "identical": identical,
    }


def render(results: list[dict], cmp: dict | None, scope: str, jobs: int) -> str:
    rows, reasons = [], []
    total_items = sum(r["items"] for r in results)
    total_ok = sum(r["converted"] for r in results)
    for r in results:
        share = 100 * r["converted"] / r["items"] if r["items"] else 0.0
        notes = sorted(r["notes"].items(), key=lambda kv: -kv[1])
        rows.append(
            [
                LABEL.get(r["kind"], r["kind"]),
                r["files"],
                r["items"],
                r["converted"],
                f"{share:.2f} %",
                f"{r['seconds']:.0f}",
                f"{r['files'] / r['seconds']:.1f}",
                f"{r['items'] / r['seconds']:.1f}",
                ", ".join(f"{k} {v}" for k, v in notes) or "-",
            ]
        )
        reasons += [[r["kind"], n, reason.replace("|", "\\|")] for reason, n in r["reasons"]]
    overall = 100 * total_ok / total_items if total_items else 0.0
    md = [
        "## Conversion to interleaved ABC (`benchmarks/bench_convert.py`)",
        "",
        f"`convert --to abc` over music21's bundled corpus ({scope}), {jobs} worker processes, per-item "
        'time limit 180 s. An item is a file, or one tune of an ABC tune book. "Fallbacks used" counts '
        "the items converted by a path other than the reference's (the reference drops them). Seconds are "
        "wall-clock on a machine shared with other work, so rates are lower bounds.",
        "",
        table(
            [
                "source kind",
                "files",
                "items",
                "converted",
                "share",
                "seconds",
                "files/s",
                "items/s",
                "fallbacks used",
            ],
            rows,
        ),
        "",
        f"**All items: {total_ok:,} of {total_items:,} converted ({overall:.2f} %).**",
        "",
    ]
    if reasons:
        md += ["Commonest failure reasons:", "", table(["kind", "items", "stage: reason"], reasons), ""]
    if cmp:
        ratio = cmp["subprocess_s"] / cmp["ours_s"]
        md += [
            f"In process against one subprocess per file (the reference's way) on the first {cmp['files']} "
            f"MusicXML files, {cmp['jobs']} at a time, xml -> interleaved ABC:",
            "",
            table(
                ["method", "seconds", "files/s", "converted"],
                [
                    [
                        "in-process workers (`convert_tree`)",
                        f"{cmp['ours_s']:.1f}",
                        f"{cmp['files'] / cmp['ours_s']:.1f}",
                        cmp["ours_ok"],
                    ],
                    [
                        "`python xml2abc.py -d 8 -x FILE` per file, then interleave",
                        f"{cmp['subprocess_s']:.1f}",
                        f"{cmp['files'] / cmp['subprocess_s']:.1f}",
                        cmp["subprocess_ok"],
                    ],
                ],
            ),
            "",
            f"Speed-up {ratio:.1f}x. Where the reference's way converts a file, the two outputs are "
            f"byte-identical for {cmp['identical']} of {cmp['subprocess_ok']} files.",
            "",
        ]
    md.append(f"Machine: {machine()}.")
    return "\n".join(md)


def load_log(path: Path) -> list[dict]:
    """The per-kind result lines (JSON) a previous run printed."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.startswith('{"kind"')]
    return [{**r, "reasons": [tuple(x) for x in r["reasons"]]} for r in lines]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: musicxml,abc,music21")
    ap.add_argument("--limit", type=int, default=None, help="at most this many files per kind")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--compare-files", type=int, default=120, help="MusicXML files for the subprocess comparison"
    )
    ap.add_argument("--out", type=Path, default=None, help="keep the converted corpus here")
    ap.add_argument(
        "--from-log",
        type=Path,
        default=None,
        help="take the per-kind results from a previous run's output instead of converting again",
    )
    ap.add_argument(
        "--rerun", default="", help="with --from-log: convert these kinds again (comma-separated)"
    )
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--real", type=Path, help="instead: prepare this folder of real files as ingest does")
    ap.add_argument("--code", type=Path, help="with --real: measure the engine checked out here")
    ap.add_argument("--json", type=Path, help="with --real: save the figures here")
    ap.add_argument("--before", type=Path, help="with --real: a saved run to compare with")
    args = ap.parse_args()
    if args.real:
        real_run(args)
        return
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    root = corpus_root()
    rerun = {k.strip() for k in args.rerun.split(",") if k.strip()}
    logged = {r["kind"]: r for r in load_log(args.from_log)} if args.from_log else {}
    tmp = tempfile.TemporaryDirectory()
    out = args.out or Path(tmp.name)
    results = []
    for kind in kinds:
        if kind in logged and kind not in rerun:
            results.append(logged[kind])
            continue
        res = run_kind(root, out, kind, args.jobs, args.limit)
        res["files"] = count_files(root, kind, args.limit)
        results.append(res)
        print(json.dumps(res, default=str), flush=True)
    tmp.cleanup()
    cmp = compare_subprocess(root, args.jobs, args.compare_files) if args.compare_files else None
    if cmp:
        print(json.dumps(cmp), flush=True)
    whole = args.limit is None and sorted(kinds) == sorted(KINDS)
    scope = (
        "the whole corpus"
        if whole
        else f"kinds {', '.join(kinds)}" + (f", at most {args.limit} files per kind" if args.limit else "")
    )
    text = render(results, cmp, scope, args.jobs)
    print(text)
    if not args.no_write:
        write_section("bench_convert", text)


def real_run(args: argparse.Namespace) -> None:
    import importlib.util
    import os

    # by path: with --code, the package `benchmarks` may be another checkout's
    spec = importlib.util.spec_from_file_location("real_corpus", Path(__file__).with_name("real_corpus.py"))
    real_corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_corpus)

    load = os.getloadavg()[0]
    started = time.perf_counter()
    result = real_corpus.prepare(args.real, args.jobs)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=1))
    if args.json:
        real_corpus.save(result, args.json)
    if args.code or args.no_write:
        return
    before = json.loads(args.before.read_text(encoding="utf-8")) if args.before else None
    lines = [
        "## Conversion of real corpora (`benchmarks/bench_convert.py --real`)",
        "",
        f"{machine()}; load average {load:.1f}; {args.jobs} worker processes, ingest's 180 s limit per file. "
        "Files fetched from public corpora, not committed: 40 Bach chorales in Humdrum "
        "(craigsapp/bach-370-chorales, every 7th), 40 MusicXML scores of When-in-Rome "
        "(MarkGotham/When-in-Rome: Beethoven quartet movements, OpenScore Lieder, textbook examples), the "
        "first 40 tunes of two Nottingham ABC books and 40 of its MIDI files (jukedeck/nottingham-dataset). "
        "Each file prepared as `ingest` prepares it: interleaved ABC, and MTF rendered through MIDI. "
        + (
            f"Before (the engine before issue 27) → after; {before['seconds']} s → {result['seconds']} s."
            if before
            else f"{result['seconds']} s."
        ),
        "",
        table(real_corpus.HEADER, real_corpus.rows(result, before)),
        "",
        "Reasons met (after): "
        + "; ".join(
            f"{fmt}: " + ", ".join(f"{n} x {r}" for r, n in rs.items())
            for fmt, rs in result["reasons"].items()
        )
        + ".",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("bench_convert_real", text)


if __name__ == "__main__":
    main()
