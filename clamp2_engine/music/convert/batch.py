"""Convert a folder tree: plan (mirror names, split tune books, skip what exists), run every item in
killable worker processes with a time limit, write outputs atomically, log each failure, summarise."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clamp2_engine.paths import atomic_write_bytes, atomic_write_text, iter_files, mirror_path
from clamp2_engine.runlog import ErrorLog, RunSummary, progress_bar

from .common import (
    ABC_SUFFIXES,
    DEFAULT_MAX_BYTES,
    MIDI_SUFFIXES,
    MTF_SUFFIXES,
    SCORE_SUFFIXES,
    ConversionError,
    source_kind,
)

TARGETS = ("abc", "mtf", "midi", "xml")
EXTENSION = {"abc": ".abc", "mtf": ".mtf", "midi": ".mid", "xml": ".xml"}
# Accepted source kinds per target, best first (the first claims a name when two sources share a stem).
SOURCES = {
    "abc": ("musicxml", "abc", "music21"),
    "mtf": ("midi", "musicxml", "abc", "music21"),
    "midi": ("mtf",),
    "xml": ("abc",),
}
SUFFIXES = {
    "abc": SCORE_SUFFIXES,
    "mtf": MIDI_SUFFIXES | SCORE_SUFFIXES,
    "midi": MTF_SUFFIXES,
    "xml": ABC_SUFFIXES,
}
DEFAULT_TIMEOUT = 180.0
# Imported once by the fork server, so that each (re)started worker begins warm.
PRELOAD = (
    "clamp2_engine.music.convert.batch",
    "clamp2_engine.music.convert.score",
    "clamp2_engine.music.convert.m21",
    "clamp2_engine.music.convert.mtf",
    "abctoolkit.xml2abc",
    "abctoolkit.abc2xml",
    "abctoolkit.rotate",
    "music21",
)


@dataclass(frozen=True)
class ConvertTask:
    """One item to convert: a file, or one tune of an ABC file (``tune`` holds its text)."""

    source: str
    kind: str
    to: str
    out: str
    item: str = ""
    tune: str | None = None
    notes: tuple[str, ...] = ()
    m3_compatible: bool = True
    overwrite: bool = False
    max_bytes: int | None = DEFAULT_MAX_BYTES


@dataclass
class ConvertReport:
    """The outcome of :func:`convert_tree`: overall counts, per source kind counts, the error log."""

    summary: RunSummary
    errors: ErrorLog
    by_kind: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    slowest: list[tuple[float, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            **self.summary.as_dict(),
            "errors": self.errors.count,
            "errors_file": str(self.errors.path),
            "by_kind": {k: dict(v) for k, v in self.by_kind.items()},
        }


# ---------------------------------------------------------------- planning


def _tunes(path: Path, max_bytes: int | None) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    from .common import read_input
    from .score import read_abc

    tunes, notes = read_abc(read_input(path, max_bytes))
    return tunes, tuple(notes)


def _claim(base: Path, source: Path, sfx: str, claimed: set[Path]) -> Path:
    """The output path for one piece; when another source already has the name (same stem, other
    format), the format goes into the name: ``piece.xml`` and ``piece.mid`` -> ``piece_xml.mtf``."""
    out = base.with_name(base.stem + sfx + base.suffix)
    fmt, n = source.suffix.lstrip(".").lower(), 1
    while out in claimed:
        out = base.with_name(f"{base.stem}_{fmt}{n if n > 1 else ''}{sfx}{base.suffix}")
        n += 1
    claimed.add(out)
    return out


def plan(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: str,
    *,
    overwrite: bool = False,
    m3_compatible: bool = True,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    kinds: set[str] | None = None,
    limit: int | None = None,
) -> tuple[list[ConvertTask], int, list[tuple[Path, str, ConversionError]]]:
    """The tasks for converting ``src`` into ``dst``, the number of items skipped because their output
    exists, and ``(path, kind, error)`` for files that could not even be planned. ABC files are read
    here and split into one task per tune."""
    if to not in TARGETS:
        raise ValueError(f"unknown target {to!r}; choose from {', '.join(TARGETS)}")
    order = SOURCES[to]
    failures: list[tuple[Path, str, ConversionError]] = []
    files = [
        (p, source_kind(p))
        for p in iter_files(
            src,
            SUFFIXES[to],
            rejected=lambda p, r: failures.append((p, source_kind(p), ConversionError("read", r))),
        )
    ]
    files = sorted(((p, k) for p, k in files if k in order), key=lambda pk: (order.index(pk[1]), str(pk[0])))
    selected = [(p, k) for p, k in files if kinds is None or k in kinds][:limit]
    chosen = {p for p, _ in selected}
    claimed: set[Path] = set()  # names are given over all accepted files, so a subset run names alike
    tasks, skipped = [], 0
    opts = {"m3_compatible": m3_compatible, "overwrite": overwrite, "max_bytes": max_bytes}
    for path, kind in files:
        base = mirror_path(src, path, dst, EXTENSION[to])
        items: list[tuple[str, str | None, tuple[str, ...]]] = [("", None, ())]
        if kind == "abc" and path in chosen:
            try:
                tunes, notes = _tunes(path, max_bytes)
            except ConversionError as exc:
                failures.append((path, kind, exc))
                continue
            items = [(sfx, tune, notes) for sfx, tune in tunes]
        for sfx, tune, notes in items:
            out = _claim(base, path, sfx, claimed)
            if path not in chosen:
                continue
            if not overwrite and out.exists():
                skipped += 1
                continue
            label = f"X:{sfx[1:]}" if sfx else ""
            tasks.append(ConvertTask(str(path), kind, to, str(out), label, tune, notes, **opts))
    return tasks, skipped, failures


# ---------------------------------------------------------------- one task (in a worker)


def _convert(task: ConvertTask) -> list[tuple[str, str | bytes, tuple[str, ...]]]:
    """``(suffix, content, notes)`` per output of one task."""
    from . import mtf, score
    from .common import decode_text, read_input

    if task.to == "abc":
        if task.kind == "abc":
            piece = score.abc_tune_to_abc(task.tune or "")
            pieces = [piece]
        elif task.kind == "musicxml":
            data = read_input(task.source, task.max_bytes)
            pieces = score.musicxml_to_abc(data, Path(task.source).stem, task.source, task.max_bytes)
        else:
            read_input(task.source, task.max_bytes)  # size and emptiness checks
            pieces = score.music21_file_to_abc(task.source)
        return [(p.suffix, p.text, p.notes) for p in pieces]
    if task.to == "mtf":
        if task.kind == "midi":
            mid, notes = mtf.read_midi(task.source, task.max_bytes)
            return [("", mtf.mido_to_mtf(mid, task.m3_compatible), tuple(notes))]
        if task.kind == "abc":
            midis = [("", *score.abc_tune_to_midi(task.tune or ""))]
        else:
            midis = [
                (p.suffix, p.text.encode("latin-1"), p.notes)
                for p in score.file_to_pieces(task.source, "midi", task.max_bytes)
            ]
        out = []
        for sfx, data, rendered in midis:
            mid, notes = mtf.read_midi(data)
            if not any(note.startswith(score.MUSIC21_FALLBACK) for note in rendered):
                by = score.renderer_of(task.kind, task.tune, rendered, task.source)
                rendered = (f"rendered with {by}", *rendered)
            out.append((sfx, mtf.mido_to_mtf(mid, task.m3_compatible), (*rendered, *notes)))
        return out
    if task.to == "midi":
        text, _ = decode_text(read_input(task.source, task.max_bytes))
        return [("", mtf.midi_to_bytes(mtf.mtf_to_midi(text)), ())]
    return [("", score.abc_to_musicxml(task.tune or ""), ())]


def run_task(task: ConvertTask) -> dict:
    """Convert one item and write its outputs (existing ones are kept unless ``overwrite``)."""
    try:
        outputs = _convert(task)
    except ConversionError as exc:
        return {"error": [exc.stage, exc.reason]}
    base = Path(task.out)
    written, kept, notes = 0, 0, list(task.notes)
    for sfx, content, piece_notes in outputs:
        out = base.with_name(base.stem + sfx + base.suffix)
        notes.extend(n for n in piece_notes if n not in notes)
        if out.exists() and not task.overwrite:
            kept += 1
            continue
        if isinstance(content, bytes):
            atomic_write_bytes(out, content)
        else:
            atomic_write_text(out, content)
        written += 1
    return {"written": written, "kept": kept, "notes": notes}


CONVERT_MEMORY_MB = 3072  # address space a conversion worker may use; CLAMP2_CONVERT_MEMORY_MB overrides


def convert_memory() -> int:
    """Bytes of address space each conversion worker may use (ingest, convert, serve's uploads and
    renderings): a pathological file (an absurd meter, a dense MIDI) fails in its worker, never takes
    the machine's memory."""
    try:
        mb = int(os.environ.get("CLAMP2_CONVERT_MEMORY_MB", CONVERT_MEMORY_MB))
    except ValueError:
        mb = CONVERT_MEMORY_MB
    return max(256, mb) * 2**20


def quiet_worker() -> None:
    """Worker set-up: library chatter on stdout/stderr goes nowhere, and the worker's address space is
    capped at :func:`convert_memory` (children it starts inherit the cap)."""
    import resource

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker
    limit = convert_memory()
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def memory_note(error: str) -> str:
    """A worker's error in the user's words when it ran out of its memory limit."""
    if "MemoryError" in error or "memory allocation" in error or "bad_alloc" in error:
        stage = (
            error.split(":", 1)[0] + ": " if ":" in error and "Error" not in error.split(":", 1)[0] else ""
        )
        return f"{stage}needs more than the conversion limit of {convert_memory() // 2**20} MiB of memory"
    return error


def _outcomes(
    tasks: list[ConvertTask], jobs: int, timeout: float | None
) -> Iterator[tuple[ConvertTask, dict, float]]:
    if not tasks:
        return
    if jobs <= 0:  # in process: no time limit (library use, debugging)
        for task in tasks:
            start = time.perf_counter()
            try:
                result = run_task(task)
            except Exception as exc:
                result = {"error": ["convert", f"{type(exc).__name__}: {exc}"]}
            yield task, result, time.perf_counter() - start
        return
    from clamp2_engine.workers import run_tasks

    for o in run_tasks(
        run_task, tasks, jobs=jobs, timeout=timeout, initializer=quiet_worker, preload=PRELOAD
    ):
        result = (
            o.result
            if o.ok
            else {"error": ["timeout" if "timed out" in o.error else "convert", memory_note(o.error)]}
        )
        yield o.task, result, o.seconds


# ---------------------------------------------------------------- the tree


def convert_tree(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: str,
    jobs: int | None = None,
    overwrite: bool = False,
    *,
    m3_compatible: bool = True,
    timeout: float | None = DEFAULT_TIMEOUT,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    kinds: set[str] | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> ConvertReport:
    """Convert every accepted file under ``src`` (or the file ``src``) into ``dst`` mirroring its
    folders. ``jobs`` worker processes (default: CPU count; 0 runs in this process without a time
    limit) each convert one item at a time under ``timeout`` seconds. Items whose output exists are
    skipped unless ``overwrite``. Failures go to ``dst/errors.jsonl`` (rewritten per run)."""
    dst_p = Path(dst)
    dst_p.mkdir(parents=True, exist_ok=True)
    errors_path = dst_p / "errors.jsonl"
    errors_path.unlink(missing_ok=True)
    errors = ErrorLog(errors_path)
    report = ConvertReport(RunSummary(f"convert --to {to}"), errors)
    summary = report.summary
    tasks, skipped, failures = plan(
        src,
        dst,
        to,
        overwrite=overwrite,
        m3_compatible=m3_compatible,
        max_bytes=max_bytes,
        kinds=kinds,
        limit=limit,
    )
    for path, kind, exc in failures:
        errors.add(path, exc.stage, exc.reason, kind=kind)
        summary.add("failed")
        report.by_kind[kind].update(items=1, failed=1)
    if skipped:
        summary.add("skipped (output exists)", skipped)
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    with progress_bar(f"converting to {to}", len(tasks), enabled=progress) as advance:
        for task, result, seconds in _outcomes(tasks, jobs, timeout):
            stats = report.by_kind[task.kind]
            stats["items"] += 1
            stats["worker_ms"] += round(seconds * 1000)
            label = f"{task.source}#{task.item}" if task.item else task.source
            if "error" in result:
                stage, reason = result["error"]
                extra = {"item": task.item} if task.item else {}
                errors.add(task.source, stage, reason, kind=task.kind, **extra)
                summary.add("failed")
                stats["failed"] += 1
            else:
                summary.add("converted")
                summary.add("outputs written", result["written"])
                stats["converted"] += 1
                for note in result["notes"]:
                    summary.add(note)
                    stats[note] += 1
            report.slowest = sorted([*report.slowest, (seconds, label)], reverse=True)[:5]
            advance()
    return report
