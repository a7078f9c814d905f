"""Ingest speed: the single-process engine against `--runner ray` (a local Ray), whole processes.

    python benchmarks/bench_ingest.py [--scores 40] [--no-write]

Two corpora, each ingested from scratch into a fresh embedded store by `clamp2-engine ingest` in its own
process, with the packaged `demo` model: the bench corpus as a plain folder (60 .abc scores, converted and
rendered, and 60 .mtf files) and MusicXML chorales from music21's corpus (converted to ABC and rendered to
MIDI/MTF on the way). Reports pieces/s per engine, start-up included, and the per-core conversion rate
docs/scale.md plans with. Writes the ``bench_ingest`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import embedding as E  # noqa: E402
from benchmarks._report import machine, table, write_section  # noqa: E402


def chorales(folder: Path, n: int) -> Path:
    """The first ``n`` MusicXML Bach chorales of music21's corpus, copied into ``folder``."""
    from music21 import corpus

    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in corpus.getComposer("bach") if str(p).endswith(".mxl"))[:n]:
        shutil.copy(path, folder / Path(path).name)
    return folder


def midi_folder(folder: Path) -> Path:
    """The bench corpus's MTF files as standard MIDI files (the engine's MTF -> MIDI, parity-tested)."""
    from clamp2_engine.music.convert import midi_to_bytes, mtf_to_midi

    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((E.BENCH / "mtf").glob("*.mtf")):
        (folder / f"{path.stem}.mid").write_bytes(
            midi_to_bytes(mtf_to_midi(path.read_text(encoding="utf-8")))
        )
    return folder


def ingest(corpus: Path, home: Path, engine: str, code: Path | None = None) -> tuple[float, dict]:
    """Seconds and the JSON report of one `clamp2-engine ingest` process into a fresh store (``code``:
    another checkout's engine, for before/after figures)."""
    shutil.rmtree(home, ignore_errors=True)
    command = [
        sys.executable, "-m", "clamp2_engine", "ingest", str(corpus), "-c", "bench", "--model", "demo",
        "--json", "--runner", engine,
    ]  # fmt: skip
    env = {**os.environ, "CLAMP2_HOME": str(home), "HF_HUB_OFFLINE": "1", "RAY_DEDUP_LOGS": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=code)  # -m: cwd first
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"ingest --runner {engine} failed: {proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1])


def revision(checkout: Path) -> str:
    """The short commit id of a git checkout (``unknown`` outside git)."""
    proc = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scores", type=int, default=40, help="MusicXML chorales to convert and ingest")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--before", type=Path, help="also run this checkout of the engine (e.g. a git worktree)")
    ap.add_argument("--engines", default="local,ray", help="local, ray or both (default)")
    args = ap.parse_args(argv)
    runs = [(e, None) for e in args.engines.split(",")]
    if args.before is not None:
        runs = [(e, code) for e in args.engines.split(",") for code in (args.before, None)]
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    rows, loads = [], [os.getloadavg()[0]]
    try:
        corpora = {
            "bench corpus as a plain folder (60 .abc scores, converted and rendered; 60 .mtf)": E.BENCH,
            f"{args.scores} MusicXML chorales (converted to ABC and rendered to MTF)": chorales(
                work / "chorales", args.scores
            ),
        }
        if args.before is not None:
            corpora["60 MIDI files (the bench corpus's MTF written as MIDI)"] = midi_folder(work / "midi")
        for label, corpus in corpora.items():
            for engine, code in runs:
                seconds, report = ingest(corpus, work / "home", engine, code)
                rows.append(
                    [
                        label,
                        engine if args.before is None else f"{engine}, {'before' if code else 'after'}",
                        report["embedded"],
                        report["failed"],
                        f"{seconds:.1f}",
                        f"{report['embedded'] / seconds:.2f}",
                    ]
                )
                print(rows[-1], flush=True)
                loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.before is not None:
        report_before_after(args, rows, loads)
        return
    text = "\n".join(
        [
            "## Ingest: one process vs Ray Data (`benchmarks/bench_ingest.py`)",
            "",
            f"Machine: {machine()}; load average {min(loads):.1f}-{max(loads):.1f}. `clamp2-engine ingest CORPUS "
            "-c bench --model demo --runner local|ray` as whole processes into a fresh embedded store (Ray: a "
            "local Ray started by the run; one embedding actor, conversion tasks as Ray schedules them). "
            "Seconds include start-up, planning, writing and the index build.",
            "",
            table(["corpus", "engine", "pieces embedded", "failed", "seconds", "pieces/s"], rows),
            *(
                ["", f"Before: the engine at commit {revision(args.before)}, run in the same session."]
                if args.before
                else []
            ),
            "",
            "On one 2-core machine Ray costs time: its embedding actor holds one of the two cores for the whole "
            "run, so conversion runs on one core instead of the local engine's two, and Ray's start-up adds "
            "seconds. Its use is to spread conversion over many cores and embedding over many GPUs across "
            "machines (docs/scale.md), where the local engine cannot follow.",
        ]
    )
    print(text)
    if not args.no_write:
        write_section("bench_ingest", text)


def report_before_after(args: argparse.Namespace, rows: list[list], loads: list[float]) -> None:
    """The ``bench_ingest_before_after`` section: each corpus by the engine at ``--before`` and now."""
    for row in rows:
        row[1] = row[1].split(", ")[-1]
    speedups = {}
    for before, after in zip(rows[0::2], rows[1::2], strict=True):
        speedups[before[0]] = float(before[4]) / float(after[4])
    text = "\n".join(
        [
            "## Ingest before and after (`benchmarks/bench_ingest.py --before CHECKOUT`)",
            "",
            f"Machine: {machine()}; load average {min(loads):.1f}-{max(loads):.1f}. `clamp2-engine ingest CORPUS "
            f"-c bench --model demo --runner local` as whole processes into a fresh embedded store, the engine at "
            f"commit {revision(args.before)} (before) and this checkout (after) run one after the other in the "
            "same session. Seconds include start-up, planning, conversion, embedding, writing and the index build.",
            "",
            table(["corpus", "code", "pieces embedded", "failed", "seconds", "pieces/s"], rows),
            "",
            "Speed-up (before seconds / after seconds): "
            + "; ".join(f"{label.split(' (')[0]}: {x:.2f}x" for label, x in speedups.items())
            + ". Scores' MTF now comes from Verovio's MIDI in music21's conventions (MusicXML, and interleaved "
            "ABC through abc2xml; music21 where Verovio fails); patching cuts whole ABC bodies and writes uint8 "
            "ids from one buffer; the fast-search export an ingest ends with (once per model, so in every fresh "
            "store here) makes the text tower alone, about 7 s less.",
        ]
    )
    print(text)
    if not args.no_write:
        write_section("bench_ingest_before_after", text)


if __name__ == "__main__":
    main()
