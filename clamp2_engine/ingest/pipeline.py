"""Corpus -> Qdrant collection: hash, skip what is unchanged, convert, embed in batches, upsert, prune.

Idempotent and resumable: a point's id derives from its piece's identity and its payload carries the
hash of what it was made from, so a re-run embeds only new or changed pieces; points are written a
batch at a time, so a killed run loses at most the batch in flight and the next run finishes the job
without duplicates. Points whose source disappeared are deleted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp2_engine.encoder import InputError
from clamp2_engine.errors import require_extra
from clamp2_engine.ingest.corpus import (
    Corpus,
    PieceInput,
    Problem,
    Unit,
    first_string,
    merge_pieces,
    needs_converter,
    prepare_task,
    prepare_unit,
    unit_hash,
)
from clamp2_engine.jsonl import capped
from clamp2_engine.runlog import ErrorLog, progress_bar
from clamp2_engine.store import Collection, Point, Store, piece_identity, point_id
from clamp2_engine.store.fields import canonical_metadata
from clamp2_engine.store.schema import CollectionRecord, UnitState, now_iso
from clamp2_engine.types import MIDI_SUFFIXES, MUSIC_VECTORS, VECTORS

if TYPE_CHECKING:  # pragma: no cover
    from clamp2_engine.pretrained import CLaMP2

DEFAULT_WRITE_BATCH = 32
DEFAULT_TIMEOUT = 180.0  # seconds per score conversion in a worker process


@dataclass
class IngestReport:
    """What one ingest did; ``units`` = ``skipped`` + ``embedded`` + ``failed``."""

    collection: str
    corpus: str
    layout: str
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    index_seconds: float = 0.0  # building the search index at the end
    errors_path: str | None = None
    total_points: int | None = None  # in the collection after the run (``points`` counts those written)
    precision: str | None = None  # what the model computed at (``dtype="auto"`` resolved)

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "corpus": self.corpus,
            "layout": self.layout,
            **{k: self.counts[k] for k in ("units", "skipped", "embedded", "failed", "points", "removed")},
            "vectors": {v: self.counts[f"vectors_{v}"] for v in VECTORS},
            "seconds": round(self.seconds, 3),
            "index_seconds": round(self.index_seconds, 3),
            "errors": self.errors_path,
            "total_points": self.total_points,
            "precision": self.precision,
        }


def _prepared(
    units: Sequence[Unit], render: bool, jobs: int, timeout: float | None, errors: ErrorLog | None
) -> Iterator[tuple[Unit, list[PieceInput]]]:
    """Model input per unit: read in this process, or converted in worker processes (scores)."""
    slow = [u for u in units if jobs > 0 and (needs_converter(u) or _has_midi(u))]
    slow_keys = {u.key for u in slow}
    for unit in units:
        if unit.key not in slow_keys:
            pieces, problems = prepare_unit(unit, render)
            _log_problems(errors, problems, unit)
            yield unit, pieces
    if not slow:
        return
    from clamp2_engine.music.convert.batch import PRELOAD, memory_note, quiet_worker
    from clamp2_engine.workers import run_tasks

    tasks = [(u, render, m) for u in slow for m in _parts(u, render)]
    results: dict[str, list[list[PieceInput]]] = {}
    finished: Counter = Counter()
    for o in run_tasks(
        prepare_task, tasks, jobs=jobs, timeout=timeout, initializer=quiet_worker, preload=PRELOAD
    ):
        unit, _render, only = o.task
        if o.ok:
            pieces, problems = o.result
            _log_problems(errors, problems, unit)
            results.setdefault(unit.key, []).append(pieces)
        else:
            stage = "timeout" if "timed out" in o.error else "convert"
            what = "rendering" if only == "mtf" and needs_converter(unit) else "conversion"
            _log(errors, unit, stage, f"{what}: {memory_note(o.error)}")
        finished[unit.key] += 1
        if finished[unit.key] == len(_parts(unit, render)):
            yield unit, merge_pieces(results.pop(unit.key, []))


def _has_midi(unit: Unit) -> bool:
    return any(p.suffix.lower() in MIDI_SUFFIXES for _r, p in unit.files)


def _parts(unit: Unit, render: bool) -> tuple[str | None, ...]:
    """What of ``unit`` each worker task makes: a score's ABC and its rendered MTF apart (a rendering
    that times out leaves the ABC; with MIDI beside it, the MTF task reads that); MIDI alone in one task."""
    if needs_converter(unit):
        return ("abc", "mtf") if render or _has_midi(unit) else ("abc",)
    return (None,)


def _log_problems(errors: ErrorLog | None, problems: list[Problem], unit: Unit) -> None:
    if errors is not None:
        for source, stage, reason in problems:
            errors.add(source, stage, reason, unit=unit.key)


@dataclass
class Plan:
    """An ingest's starting point: the collection, what it already holds, and the units to (re)embed."""

    coll: Collection
    corpus: Corpus
    states: dict[str, UnitState]
    pending: list[Unit]
    report: IngestReport
    started: float


def plan_ingest(
    store: Store,
    collection: str,
    corpus: Corpus,
    identity: Any,
    *,
    source: dict[str, Any] | None = None,
    render: bool = True,
    errors: ErrorLog | None = None,
    quantization: str | None = None,
) -> Plan:
    """Open (or create) the collection for ``identity``'s model, hash every unit, count the unchanged ones
    as skipped, delete the points of vanished ones, and list the rest: what every engine starts from."""
    started = time.perf_counter()
    report = IngestReport(
        collection, corpus.name, corpus.layout, errors_path=str(errors.path) if errors is not None else None
    )
    coll = store.ensure(collection, identity, source or {}, quantization)
    _complete_source(coll, source or {}, corpus)
    states = coll.unit_states(corpus.name)
    report.counts["units"] = len(corpus.units) + corpus.rejected
    report.counts["failed"] += corpus.rejected  # refused at discovery: failed items like any other
    present: set[str] = set()
    skipped: set[str] = set()
    pending: list[Unit] = []
    for unit in corpus.units:
        present.add(unit.key)
        try:
            unit.content_hash = unit_hash(unit, render)
        except OSError as exc:
            _log(errors, unit, "read", f"{type(exc).__name__}: {exc.strerror or exc}")
            report.counts["failed"] += 1
            continue
        state = states.get(unit.key)
        if state is not None and state.complete(unit.content_hash):
            report.counts["skipped"] += 1
            skipped.add(unit.key)
        else:
            pending.append(unit)
            notes: list[str] = []
            capped(
                {**unit.metadata, **{k: (unit.item or {}).get(k) for k in ("summary_en", "summary_nen")}},
                notes=notes,
            )
            for note in notes:  # stored shortened: said once, where the problems are listed
                _log(errors, unit, "metadata", f"{note} in the payload")
    if any(needs_converter(u) or _has_midi(u) for u in pending):
        require_extra("convert")  # scores or MIDI to convert: fail now, in one line, if the extra is missing
    if errors is not None:  # the problems of unchanged pieces still stand: keep them in the log
        errors.keep_previous(lambda r: r.get("unit") in skipped)
    vanished = [pid for key, st in states.items() if key not in present for pid in st.ids]
    report.counts["removed"] += coll.delete(vanished)
    return Plan(coll, corpus, states, pending, report, started)


def finish_ingest(plan: Plan, on_index: Callable[[], None] | None = None) -> IngestReport:
    """Build the search index when anything changed; the report, timed from the plan."""
    report = plan.report
    if report.counts["points"] or report.counts["removed"]:
        if on_index is not None:
            on_index()
        indexing = time.perf_counter()
        plan.coll.optimize()
        report.index_seconds = time.perf_counter() - indexing
    report.total_points = plan.coll.count()
    report.seconds = time.perf_counter() - plan.started
    return report


def ingest_corpus(
    store: Store,
    collection: str,
    corpus: Corpus,
    model: CLaMP2,
    *,
    source: dict[str, Any] | None = None,
    render: bool = True,
    write_batch: int = DEFAULT_WRITE_BATCH,
    errors: ErrorLog | None = None,
    progress: bool = True,
    jobs: int = 0,
    timeout: float | None = DEFAULT_TIMEOUT,
    on_index: Callable[[], None] | None = None,
    quantization: str | None = None,
) -> IngestReport:
    """Bring ``collection`` in step with ``corpus`` (see the module docstring), in this process.

    Scores are converted in ``jobs`` worker processes with ``timeout`` seconds each (``jobs=0``: in
    this process, no time limit); everything else is prepared in this process. When anything changed,
    the search index is built at the end (``on_index`` is called first, e.g. to say so).
    """
    source = {**(source or {}), "dtype": model.precision}  # the record says what made its vectors
    plan = plan_ingest(
        store,
        collection,
        corpus,
        model.identity,
        source=source,
        render=render,
        errors=errors,
        quantization=quantization,
    )
    plan.report.precision = model.precision
    log = partial(_log, errors)
    with progress_bar(
        f"ingest {corpus.name}", len(plan.pending), enabled=progress and bool(plan.pending)
    ) as advance:
        batch: list[tuple[Unit, list[PieceInput]]] = []
        for unit, pieces in _prepared(plan.pending, render, jobs, timeout, errors):
            batch.append((unit, pieces))
            if len(batch) >= max(1, write_batch):
                write_units(plan, batch, embed_units(model, batch, log), model.identity, log)
                advance(len(batch), note=f"{plan.report.counts['points']} pieces")
                batch = []
        if batch:
            write_units(plan, batch, embed_units(model, batch, log), model.identity, log)
            advance(len(batch), note=f"{plan.report.counts['points']} pieces")
    return finish_ingest(plan, on_index)


def _complete_source(coll: Collection, source: dict[str, Any], corpus: Corpus) -> None:
    """Fill in how to load the model (e.g. the text model) when the collection did not know it yet, and
    where the corpus lives (``serve`` reads the pieces' files from there)."""
    record = coll.record
    missing = {k: v for k, v in source.items() if v and not record.model_source.get(k)}
    root = str(Path(corpus.root).resolve())
    if record.corpora.get(corpus.name) != root:
        record = CollectionRecord(**{**record.as_dict(), "corpora": {**record.corpora, corpus.name: root}})
        coll.write_record(record)
    if missing:
        coll.write_record(
            CollectionRecord(**{**record.as_dict(), "model_source": {**record.model_source, **missing}})
        )


def _log(errors: ErrorLog | None, unit: Unit, stage: str, reason: str) -> None:
    if errors is not None:
        where = unit.files[0][1] if unit.files and unit.item is None else (unit.item or {}).get("__source__")
        errors.add(str(where or unit.label), stage, reason, unit=unit.key)


Log = Callable[[Unit, str, str], None]  # (unit, stage, reason): one error row


def write_units(
    plan: Plan,
    prepared: Sequence[tuple[Unit, list[PieceInput]]],
    vectors: list[list[dict[str, tuple[np.ndarray, int]]]],
    identity: Any,
    log: Log,
) -> None:
    """Upsert the points of embedded units (``vectors`` from :func:`embed_units`), drop their stale points,
    count them; a unit without any music vector is a failed one."""
    coll, corpus, states, report = plan.coll, plan.corpus, plan.states, plan.report
    points = []
    stale: list[str] = []
    for (unit, pieces), unit_vectors in zip(prepared, vectors, strict=True):
        kept = [
            (p, v) for p, v in zip(pieces, unit_vectors, strict=True) if any(k in v for k in MUSIC_VECTORS)
        ]
        ids = set()
        for piece, vecs in kept:
            pid = point_id(piece_identity(corpus.name, unit.key, piece.part))
            ids.add(pid)
            points.append(
                Point(
                    pid,
                    {k: a for k, (a, _n) in vecs.items()},
                    _payload(corpus, unit, piece, vecs, len(kept), identity, plan.report.precision),
                )
            )
            for k in vecs:
                report.counts[f"vectors_{k}"] += 1
        old = states.get(unit.key)
        stale += [pid for pid in (old.ids if old else []) if pid not in ids]
        if kept:
            report.counts["embedded"] += 1
            report.counts["points"] += len(kept)
        else:
            report.counts["failed"] += 1
            if not pieces:
                log(unit, "convert", "no usable music in this item (see the reasons above)")
    coll.upsert(points)
    report.counts["removed"] += coll.delete(stale)


def embed_units(
    model: CLaMP2, prepared: Sequence[tuple[Unit, list[PieceInput]]], log: Log
) -> list[list[dict[str, tuple[np.ndarray, int]]]]:
    """Per unit, per piece: ``{vector name: (feature, input length)}``; bad inputs are logged and left out."""
    enc = model.encoder
    out: list[list[dict[str, tuple[np.ndarray, int]]]] = [[{} for _ in pieces] for _, pieces in prepared]
    jobs: dict[str, list[tuple[int, int, str, np.ndarray]]] = {"music": [], "text": []}
    for u, (unit, pieces) in enumerate(prepared):
        summary = unit.summary
        for p, piece in enumerate(pieces):
            for modality in MUSIC_VECTORS:
                text = getattr(piece, modality)
                if text:
                    try:
                        jobs["music"].append((u, p, modality, enc.prepare_music(text)))
                    except (InputError, ValueError) as exc:
                        log(unit, f"prepare {modality}", str(exc))
            if summary and enc.tokenizer is not None:
                try:
                    jobs["text"].append((u, p, "text", enc.prepare_text(summary)))
                except (InputError, ValueError) as exc:
                    log(unit, "prepare text", str(exc))
    for tower, items in jobs.items():
        if not items:
            continue
        feats = enc.features(tower, [ids for *_, ids in items], pooled=True, show_progress=False)
        for (u, p, name, ids), feat in zip(items, feats, strict=True):
            out[u][p][name] = (feat, len(ids))
    return out


def _payload(
    corpus: Corpus,
    unit: Unit,
    piece: PieceInput,
    vecs: dict[str, tuple[np.ndarray, int]],
    parts: int,
    identity: Any,
    precision: str | None = None,
) -> dict[str, Any]:
    # the item's fields (seed layout) over what the file and the music state (read where it was prepared)
    meta = canonical_metadata(capped({**piece.metadata, **unit.metadata}))
    title, composer = first_string(meta.get("title")), first_string(meta.get("composer"))
    item = unit.item or {}
    return {
        "piece_id": piece_identity(corpus.name, unit.key, piece.part),
        "corpus": corpus.name,
        "unit": unit.key,
        "unit_hash": unit.content_hash,
        "unit_parts": parts,
        "part": piece.part,
        "title": title,
        "composer": composer,
        "source": unit.files[0][0],
        "sources": dict(piece.sources),
        "formats": sorted({rel.rsplit(".", 1)[-1].lower() for rel, _ in unit.files if "." in rel}),
        "modalities": [k for k in VECTORS if k in vecs],
        "lengths": {k: n for k, (_a, n) in vecs.items()},
        "metadata": meta,
        "summary_en": capped(item.get("summary_en")),
        "summary_nen": capped(item.get("summary_nen")),
        "model": {"name": identity.name, "checkpoint_sha256": identity.checkpoint_sha256}
        | ({"precision": precision} if precision else {}),
        "ingested_at": now_iso(),
    }
