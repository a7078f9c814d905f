"""Verovio's MIDI (normalised to music21's conventions) against music21's rendering, on every MusicXML
Bach chorale of music21's corpus: patch counts of the MTF, notes (onset, duration, pitch), and time.

    python benchmarks/bench_engraver.py [--limit N] [--no-write]

For each chorale both renderings are made in this process from the same MusicXML bytes (music21: parse
and render, as the engine did before; Verovio: load, render, normalise). Reports the share of pieces whose
patch count is within 5% of music21's, the share whose notes are identical, the mean note agreement
(Jaccard), and seconds per piece of each. Writes the ``engraver`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, table, write_section  # noqa: E402


def compare(items, split_patches, mido_to_mtf) -> list[str]:
    """Figures for ``(music21, verovio)`` renderer pairs: patch counts, notes, failures, seconds."""
    from clamp2_engine.music.convert import engraver

    within = same = failed = unread = 0
    jaccard: list[float] = []
    seconds = {"music21": 0.0, "verovio": 0.0}
    for by_music21, by_verovio in items:
        started = time.perf_counter()
        try:
            a = by_music21()
        except Exception:  # noqa: BLE001 - counted: before, the piece had no MIDI at all
            unread += 1
            continue
        finally:
            seconds["music21"] += time.perf_counter() - started
        started = time.perf_counter()
        try:
            v = by_verovio()
        except Exception:  # noqa: BLE001 - counted: the engine falls back to music21 there
            failed += 1
            continue
        finally:
            seconds["verovio"] += time.perf_counter() - started
        na, nv = engraver.note_events(a), engraver.note_events(v)
        pa, pv = (len(split_patches(mido_to_mtf(m))) for m in (a, v))
        within += abs(pv / pa - 1) <= 0.05
        same += na == nv
        jaccard.append(len(set(na) & set(nv)) / max(1, len(set(na) | set(nv))))
    n = max(1, len(items) - unread)  # the pieces music21 renders: the comparison's reference
    return [
        str(len(items)),
        str(unread),
        f"{within} ({within / n:.1%})",
        f"{same} ({same / n:.1%})",
        f"{sum(jaccard) / max(1, len(jaccard)):.4f}",
        str(failed),
        f"{seconds['music21'] / n:.3f}",
        f"{seconds['verovio'] / n:.3f}",
        f"{seconds['music21'] / max(seconds['verovio'], 1e-9):.2f}x",
    ]


def main(argv: list[str] | None = None) -> None:
    import mido
    from music21 import corpus

    from clamp2_engine.music.convert import abctools, engraver, m21
    from clamp2_engine.music.convert.mtf import mido_to_mtf
    from clamp2_engine.music.convert.score import read_musicxml
    from clamp2_engine.music.patches import split_patches

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="the first N chorales only")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    paths = sorted(str(p) for p in corpus.getComposer("bach") if str(p).endswith((".mxl", ".xml")))
    paths = paths[: args.limit] if args.limit else paths
    load = os.getloadavg()[0]

    def musicxml(path: str):
        xml, _ = read_musicxml(Path(path).read_bytes())
        return (
            lambda: mido.MidiFile(file=io.BytesIO(m21.stream_to_midis(m21.parse_xml(xml))[0][1])),
            lambda: engraver.render_midi(xml.decode("utf-8-sig")),
        )

    def interleaved_abc(path: Path):
        xml = abctools.abc2xml(path.read_text(encoding="utf-8"))[0]  # both render abc2xml's MusicXML
        return (
            lambda: mido.MidiFile(file=io.BytesIO(m21.stream_to_midis(m21.parse_xml(xml.encode()))[0][1])),
            lambda: engraver.render_midi(xml),
        )

    def humdrum(path: str):
        return (
            lambda: mido.MidiFile(file=io.BytesIO(m21.stream_to_midis(m21.parse_path(path))[0][1])),
            lambda: engraver.render_midi(Path(path).read_text(encoding="utf-8", errors="replace")),
        )

    def mei(path: str):
        """The MEI (5) Verovio writes of a chorale: music21's MEI reader (what the engine used before)
        against Verovio reading it."""
        import verovio

        xml, _ = read_musicxml(Path(path).read_bytes())
        tk = verovio.toolkit()
        tk.loadData(xml.decode("utf-8-sig"))
        file = Path(meis) / f"{Path(path).stem}.mei"
        file.write_text(tk.getMEI(), encoding="utf-8")
        by_verovio = lambda: engraver.render_midi(file.read_text(encoding="utf-8"))  # noqa: E731
        by_music21 = lambda: mido.MidiFile(  # noqa: E731
            file=io.BytesIO(m21.stream_to_midis(m21.parse_path(str(file)))[0][1])
        )
        return (by_music21, by_verovio), (musicxml(path)[0], by_verovio)

    meis = tempfile.mkdtemp()
    meis_ = [mei(p) for p in paths]
    krn = sorted(str(p) for p in corpus.getPaths() if str(p).endswith(".krn"))[: args.limit or 60]
    abc = sorted((ROOT / "tests" / "fixtures" / "bench-corpus" / "abc").glob("*.abc"))[: args.limit or None]
    columns = [
        (f"{len(paths)} MusicXML chorales (the default: Verovio)", [musicxml(p) for p in paths]),
        (
            f"{len(abc)} interleaved ABC, through abc2xml (the default: Verovio)",
            [interleaved_abc(p) for p in abc],
        ),
        (
            f"{len(paths)} MEI chorales, as Verovio writes them (the default: Verovio)",
            [m[0] for m in meis_],
        ),
        ("the same MEI against music21's rendering of their MusicXML", [m[1] for m in meis_]),
        (f"{len(krn)} Humdrum files (stay with music21)", [humdrum(p) for p in krn]),
    ]
    results = {label: compare(items, split_patches, mido_to_mtf) for label, items in columns}
    shutil.rmtree(meis, ignore_errors=True)
    names = [
        "pieces",
        "music21 cannot read them (no MIDI before; not compared)",
        "patch count within 5% of music21's",
        "identical notes (onset, duration, pitch)",
        "mean note agreement (Jaccard)",
        "Verovio failed (music21 renders them)",
        "music21, s per piece",
        "Verovio (load, render, normalise), s per piece",
        "speed-up",
    ]
    rows = [[name, *(r[i] for r in results.values())] for i, name in enumerate(names)]
    md = (
        "## Scores to MIDI: Verovio against music21 (`benchmarks/bench_engraver.py`)\n\n"
        f"Measured on {machine()}; load average {load:.2f} when it started.\n\n"
        + table(["", *results], rows)
        + "\n\nEvery MusicXML Bach chorale of music21's corpus, the bench corpus's interleaved ABC (both "
        "renderers reading the MusicXML abc2xml makes of it), the chorales again as the MEI 5 Verovio writes of "
        "them (no MEI corpus was at hand: an MEI written by Verovio favours Verovio's reading, and music21's MEI "
        "reader fails on many of them, so the shares are of the pieces music21 reads) and the first Humdrum "
        "files of music21's corpus; "
        "both renderings in one process from the same input (`python benchmarks/bench_engraver.py`). Verovio's MIDI is normalised to music21's "
        "conventions (10,080 ticks per beat, note_off at the full length, signatures and tempi in the "
        "conductor track, pitchwheel and program_change opening each part: "
        "`clamp2_engine/music/convert/engraver.py`). Where notes differ, the renderers read the score "
        "differently (tuplets music21 rounds to its divisions, grace notes, chord symbols music21 sounds).\n"
    )
    print(md)
    if not args.no_write:
        write_section("engraver", md)


if __name__ == "__main__":
    main()
