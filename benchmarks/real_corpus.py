"""The real-corpus run of ``bench_convert.py --real DIR``: every file of a folder of real scores, ABC
books and MIDI prepared as ``ingest`` prepares it (interleaved ABC, and MTF rendered through MIDI), in
worker processes with ingest's time limit; then what a user gets per format: pieces, ABC and MTF
yields, failures by stage, notes (fallbacks taken), and the metadata a piece ends up with.

``--code DIR`` measures another checkout of the engine (e.g. a ``git worktree`` of an older commit) with
the same harness, for before/after figures: ``python benchmarks/bench_convert.py --real DIR --code OLD
--json before.json``, then ``--real DIR --before before.json``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

FORMATS = {".krn": "Humdrum", ".mxl": "MusicXML", ".xml": "MusicXML", ".musicxml": "MusicXML", ".abc": "ABC"}
FORMATS |= {".mid": "MIDI", ".midi": "MIDI"}
FIELDS = ("title", "composer", "meter", "key", "instruments")


def metadata(unit: Any, piece: Any) -> dict[str, Any]:
    """The fields a piece gets (this checkout's way; an older one knew titles and composers alone)."""
    try:
        from clamp2_engine.music.describe import file_metadata, music_metadata
    except ImportError:  # before the metadata work
        from clamp2_engine.ingest.corpus import score_title

        title, composer = score_title(unit.files[0][1], piece.part)
        return {"title": title, "composer": composer}
    return {**music_metadata(piece.abc), **file_metadata(unit.files[0][1], piece.part)}


def prepare(corpus: Path, jobs: int, timeout: float = 180.0) -> dict[str, Any]:
    """Per format: files, pieces, pieces with ABC / MTF, failures by stage, notes, metadata coverage."""
    from clamp2_engine.ingest.corpus import discover, prepare_task
    from clamp2_engine.music.convert.batch import PRELOAD, quiet_worker
    from clamp2_engine.workers import run_tasks

    units = discover(corpus).units
    stats: dict[str, Counter] = defaultdict(Counter)
    reasons: dict[str, Counter] = defaultdict(Counter)
    titles: dict[str, set] = defaultdict(set)
    tasks = [(u, True, None) for u in units]
    for outcome in run_tasks(prepare_task, tasks, jobs, timeout, quiet_worker, PRELOAD):
        unit = outcome.task[0]
        fmt = FORMATS.get(unit.files[0][1].suffix.lower(), "other")
        s = stats[fmt]
        s["files"] += 1
        if not outcome.ok:
            s["failed files"] += 1
            reasons[fmt][f"worker: {outcome.error[:80]}"] += 1
            continue
        pieces, problems = outcome.result
        for _source, stage, reason in problems:
            if stage == "note":
                s["notes"] += 1
                reasons[fmt][f"note: {reason[:80]}"] += 1
            else:
                s[f"failed {stage}"] += 1
                reasons[fmt][f"{stage}: {reason[:80]}"] += 1
        for piece in pieces:
            s["pieces"] += 1
            s["abc"] += bool(piece.abc)
            s["mtf"] += bool(piece.mtf)
            s["abc and mtf"] += bool(piece.abc and piece.mtf)
            meta = metadata(unit, piece)
            for f in FIELDS:
                s[f] += bool(meta.get(f))
            titles[fmt].add(str(meta.get("title") or ""))
    for fmt, s in stats.items():
        s["distinct titles"] = len(titles[fmt] - {""})
    return {
        "stats": {k: dict(v) for k, v in stats.items()},
        "reasons": {k: dict(v.most_common(4)) for k, v in reasons.items()},
    }


def pct(n: int, of: int) -> str:
    return f"{100 * n / of:.0f}%" if of else "-"


def cell(a: dict, b: dict | None, key: str, of: str | None = None) -> str:
    """``a``'s figure (a count, or a share of ``of``), as "before → after" when there is a ``b``."""

    def one(s: dict) -> str:
        return pct(s.get(key, 0), s.get(of, 0)) if of else str(s.get(key, 0))

    return f"{one(b)} → {one(a)}" if b is not None else one(a)


def rows(after: dict[str, Any], before: dict[str, Any] | None) -> list[list[str]]:
    """A table row per format: before -> after where a before run is given."""
    out = []
    for fmt in sorted(after["stats"]):
        a = after["stats"][fmt]
        b = (before or {}).get("stats", {}).get(fmt)
        out.append(
            [
                fmt,
                str(a.get("files", 0)),
                cell(a, b, "pieces"),
                cell(a, b, "abc", "pieces"),
                cell(a, b, "mtf", "pieces" if fmt == "MIDI" else "abc"),
                cell(a, b, "notes"),
                cell(a, b, "distinct titles"),
                *(cell(a, b, f, "pieces") for f in FIELDS[1:]),
            ]
        )
    return out


HEADER = [
    "format",
    "files",
    "pieces",
    "ABC",
    "MTF (of ABC; MIDI: of pieces)",
    "notes",
    "distinct titles",
    "composer",
    "meter",
    "key",
    "instruments",
]


def save(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
