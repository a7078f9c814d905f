"""Finding the pieces of a corpus and turning each into model input (interleaved ABC, MTF, summary).

Two layouts:

- a plain folder: every file ``convert`` accepts is a unit (a score gives ABC and, rendered to MIDI,
  MTF; a MIDI file gives MTF; ``.mtf`` is used as it is); a file holding several pieces (an ABC tune
  book, an opus) gives one piece per tune;
- the seed layout: ``abc/``, ``mtf/`` and a JSONL (or ``--metadata``) whose items name their files in
  ``filepaths`` (relative to the corpus root, or to ``abc/`` / ``mtf/``); each item is one piece,
  its ``.abc`` / ``.mtf`` files are model input as they are, other files are converted, and its
  ``summary_en`` becomes the ``text`` vector.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from clamp2_engine.errors import about
from clamp2_engine.ingest.items import item_filepaths, item_unit
from clamp2_engine.music.inputs import (
    accepted_suffixes,
    conversion_reason,
    midi_mtf,
    read_ready,
    score_pieces,
    score_suffixes,
)
from clamp2_engine.paths import UnsafePathError, input_problem, iter_files, safe_join, shown_name
from clamp2_engine.runlog import ErrorLog
from clamp2_engine.types import ABC_SUFFIXES, MIDI_SUFFIXES, MTF_SUFFIXES

PIPELINE_VERSION = 2  # bump when the same files would now give other model input or metadata
SUMMARY_KEYS = ("summary_en", "summary_nen")
NOT_METADATA = {*SUMMARY_KEYS, "filepaths", "nen_language", "__source__", "__error__"}


class CorpusError(ValueError):
    """The corpus as a whole cannot be read (not a folder, ambiguous metadata)."""


@dataclass
class Unit:
    """What one point (or, for a multi-piece file, several) is made from; ``key`` is stable."""

    key: str
    files: list[tuple[str, Path]]  # (path relative to the corpus root, absolute path)
    item: dict[str, Any] | None = None  # the metadata item (seed layout)
    ready: bool = False  # .abc/.mtf files are model input as they are (seed layout)
    content_hash: str = ""
    label: str = ""  # for messages: the file or the item's first file

    @property
    def metadata(self) -> dict[str, Any]:
        return {k: v for k, v in (self.item or {}).items() if k not in NOT_METADATA and v is not None}

    @property
    def summary(self) -> str | None:
        """The English summary embedded as the ``text`` vector (the first one of a list)."""
        value = (self.item or {}).get("summary_en")
        if isinstance(value, list):
            value = next((v for v in value if isinstance(v, str) and v.strip()), None)
        return value if isinstance(value, str) and value.strip() else None


@dataclass
class Corpus:
    root: Path
    name: str
    layout: str  # "plain" | "seed"
    units: list[Unit] = field(default_factory=list)
    rejected: int = 0  # items refused before any conversion (bad metadata lines, FIFOs, missing files)


def find_metadata(root: Path) -> Path | None:
    """The seed layout's JSONL: the only ``*.jsonl`` at the top of a corpus with ``abc/`` or ``mtf/``."""
    if not ((root / "abc").is_dir() or (root / "mtf").is_dir()):
        return None
    found = sorted(p for p in root.glob("*.jsonl") if p.is_file() and not p.name.startswith("."))
    found = [p for p in found if not p.name.endswith(".errors.jsonl")]
    if len(found) > 1:
        raise about(
            CorpusError(f"{root} holds several JSONL files ({', '.join(p.name for p in found)}): pick one"),
            "metadata",
        )
    return found[0] if found else None


def discover(
    root: str | os.PathLike,
    *,
    metadata: str | os.PathLike | None = None,
    items: list[dict[str, Any]] | None = None,
    name: str | None = None,
    errors: ErrorLog | None = None,
) -> Corpus:
    """The units of the corpus at ``root``; bad items and missing files are logged and skipped."""
    root_p = Path(root).expanduser().resolve()
    if not root_p.is_dir():
        raise CorpusError(f"{root}: not a folder")
    corpus = Corpus(root_p, name or root_p.name, "plain")
    meta_path = Path(metadata).expanduser().resolve() if metadata is not None else None
    if items is None and meta_path is None:
        meta_path = find_metadata(root_p)
    if items is None and meta_path is not None:
        items = load_metadata(meta_path)

    def reject(source: str, stage: str, reason: str) -> None:
        corpus.rejected += 1
        _log(errors, source, stage, reason)

    if items is None:
        found = iter_files(root_p, accepted_suffixes(), rejected=lambda p, r: reject(str(p), "read", r))
        rels = ((shown_name(p.relative_to(root_p).as_posix()), p) for p in found)  # names not UTF-8: escaped
        corpus.units = [Unit(rel, [(rel, p)], label=rel) for rel, p in rels]
        return corpus
    corpus.layout = "seed"
    seen: set[str] = set()
    for n, item in enumerate(items, 1):
        where = str(item.get("__source__") or f"item {n}")
        if "__error__" in item:
            reject(where, "metadata", str(item["__error__"]))
            continue
        unit = _item_unit(root_p, item, where, errors)
        if unit is None:
            corpus.rejected += 1  # its reasons are logged
            continue
        if unit.key in seen:
            reject(where, "metadata", f"duplicate item: another item has the same filepaths {unit.label}")
            continue
        seen.add(unit.key)
        corpus.units.append(unit)
    return corpus


def load_metadata(path: Path) -> list[dict[str, Any]]:
    """Items of a ``.jsonl`` file or of a folder of per-piece ``.json`` files."""
    from clamp2_engine.ingest.summarize import load_items

    if not path.exists():
        raise CorpusError(f"metadata {path} not found")
    if path.is_file() and path.suffix.lower() not in (".jsonl", ".json"):
        raise CorpusError(f"metadata {path}: expected a .jsonl file or a folder of .json files")
    return load_items(path)


def _item_unit(root: Path, item: dict[str, Any], where: str, errors: ErrorLog | None) -> Unit | None:
    fps = item_filepaths(item)
    if not fps:
        _log(errors, where, "metadata", "item has no filepaths")
        return None
    files: list[tuple[str, Path]] = []
    for fp in fps:
        try:
            path = resolve_item_file(root, fp)
        except (UnsafePathError, FileNotFoundError) as exc:
            _log(errors, f"{where} ({fp})", "metadata", str(exc))
            continue
        files.append((path.relative_to(root).as_posix(), path))
    if not files:
        return None
    return Unit(item_unit(item), files, item=item, ready=True, label=fps[0])


def resolve_item_file(root: Path, rel: str) -> Path:
    """An item's file: under the corpus root, else under its ``abc/`` / ``mtf/`` root by suffix."""
    candidates = [safe_join(root, rel)]
    sub = {".abc": "abc", ".mtf": "mtf"}.get(PurePosixPath(rel).suffix.lower())
    if sub and not rel.startswith(f"{sub}/"):
        candidates.append(safe_join(root / sub, rel))
    for c in candidates:
        if c.exists():
            problem = input_problem(c, root)
            if problem:
                raise UnsafePathError(f"file {rel}: {problem}")
            return c
    raise FileNotFoundError(f"file {rel} not found under {root}")


def _log(errors: ErrorLog | None, source: str, stage: str, reason: str) -> None:
    if errors is not None:
        errors.add(source, stage, reason)


# --- content hash -----------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def unit_hash(unit: Unit, render: bool) -> str:
    """A hash of everything a unit's points are made from: its files, its item, the pipeline."""
    item = {k: v for k, v in (unit.item or {}).items() if k != "__source__"}
    blob = json.dumps(
        {
            "v": PIPELINE_VERSION,
            "render": render and needs_converter(unit),  # matters for scores only
            "item": item,
            "files": [[rel, file_sha256(p)] for rel, p in unit.files],
        },
        ensure_ascii=False,
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --- metadata values ----------------------------------------------------------------------------


def first_string(value: Any) -> str | None:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    return value.strip() if isinstance(value, str) and value.strip() else None


# --- model input ------------------------------------------------------------------------------------

Problem = tuple[str, str, str]  # (source, stage, reason) for the error log


@dataclass
class PieceInput:
    """Model input for one piece: interleaved ABC and/or MTF text, and where each came from."""

    part: str = ""  # "" for a unit's only piece, else the converter's tune/score suffix
    abc: str | None = None
    mtf: str | None = None
    sources: dict[str, str] = field(default_factory=dict)  # modality -> file (relative to the root)
    metadata: dict[str, Any] = field(default_factory=dict)  # what the file and the music state


def needs_converter(unit: Unit) -> bool:
    """Whether preparing ``unit`` runs the score converter (slow: worth a worker process)."""
    scores = score_suffixes()
    return any(
        p.suffix.lower() in scores and not (unit.ready and p.suffix.lower() in ABC_SUFFIXES)
        for _, p in unit.files
    )


def prepare_unit(unit: Unit, render: bool, only: str | None = None) -> tuple[list[PieceInput], list[Problem]]:
    """The pieces of ``unit`` as model input, and the problems met. A failed conversion leaves the
    piece what did work (a score whose rendering fails still gives ABC); nothing is raised.
    ``only`` (``"abc"`` or ``"mtf"``) makes just that modality, for conversions run apart."""
    pieces: dict[str, PieceInput] = {}
    problems: list[Problem] = []
    scores = score_suffixes()

    def piece(part: str) -> PieceInput:
        part = "" if unit.ready else part  # an item is one piece: its first of each modality
        return pieces.setdefault(part, PieceInput(part))

    def attempt(path: Path, stage: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ModuleNotFoundError:  # a missing optional dependency is the run's (one message), not an item's
            raise
        except Exception as exc:  # every converter or reader failure is this item's, never the run's
            problems.append((str(path), stage, conversion_reason(exc)))
            return None

    for rel, path in unit.files:
        suffix = path.suffix.lower()
        have_abc = only == "mtf" or (unit.ready and any(p.abc for p in pieces.values()))
        have_mtf = only == "abc" or (unit.ready and any(p.mtf for p in pieces.values()))
        if suffix in MTF_SUFFIXES and not have_mtf:
            text = attempt(path, "read", lambda p=path: read_ready(p))
            if text:
                _set(piece(""), "mtf", text, rel)
        elif suffix in ABC_SUFFIXES and unit.ready and not have_abc:
            text = attempt(path, "read", lambda p=path: read_ready(p))
            if text:
                _set(piece(""), "abc", text, rel)
        elif suffix in MIDI_SUFFIXES and not have_mtf:
            text = attempt(path, "convert", lambda p=path: midi_mtf(p))
            if text:
                _set(piece(""), "mtf", text, rel)
        elif suffix in scores and not (have_abc and (have_mtf or not render)):
            for stage, to, have in (("convert", "abc", have_abc), ("render", "mtf", have_mtf or not render)):
                if have:
                    continue
                failed: list = []  # a tune of a book that fails is a problem of its own; the others go on
                notes: list = []  # fallbacks taken: noted, not failures
                for part, text in (
                    attempt(path, stage, lambda p=path, t=to, f=failed, n=notes: score_pieces(p, t, f, n))
                    or []
                ):
                    _set(piece(part), to, text, rel)
                problems.extend((str(path), stage, conversion_reason(exc)) for _sfx, exc in failed)
                problems.extend(_notes(path, stage, notes))
    for p in pieces.values():  # music without a note (a tune of headers alone) is no piece to find
        if p.mtf and "note_on" not in p.mtf:
            problems.append((str(unit.files[0][1]), "render", "no notes in the MIDI (nothing to embed)"))
            p.mtf = None
            p.sources.pop("mtf", None)
    kept = [p for p in pieces.values() if p.abc or p.mtf]
    if only != "mtf":  # the file's fields, read where it was converted (a worker), not again when written
        _describe(unit, kept)
    return kept, problems


def _describe(unit: Unit, pieces: list[PieceInput]) -> None:
    """Each piece's metadata: what the music states (its interleaved ABC), then what the file says (a
    plain folder's; a seed item's fields are its own)."""
    from clamp2_engine.music.describe import file_metadata, music_metadata

    for p in pieces:
        stated = file_metadata(unit.files[0][1], p.part) if unit.item is None else {}
        p.metadata = {**music_metadata(p.abc), **stated}


QUIET_NOTES = {"already interleaved"}  # how a piece was made that is no news to anyone


def _notes(path: Path, stage: str, notes: list[tuple[str, str]]) -> list[Problem]:
    """The fallbacks taken for a file's pieces as problem-list notes: one per note, naming the tune when
    only one tune of a book took it."""
    parts: dict[str, list[str]] = {}
    for part, note in notes:
        if note not in QUIET_NOTES:
            parts.setdefault(note, []).append(part)
    return [
        (str(path) + (f" (tune {ps[0]})" if len(ps) == 1 and ps[0] else ""), "note", f"{stage}: {note}")
        for note, ps in parts.items()
    ]


def prepare_task(task: tuple[Unit, bool, str | None]) -> tuple[list[PieceInput], list[Problem]]:
    """:func:`prepare_unit` for a worker process."""
    return prepare_unit(*task)


def merge_pieces(parts: list[list[PieceInput]]) -> list[PieceInput]:
    """One list of pieces from the ABC-only and MTF-only results of the same unit, by piece."""
    merged: dict[str, PieceInput] = {}
    for pieces in parts:
        for p in pieces:
            into = merged.setdefault(p.part, PieceInput(p.part))
            into.metadata = {**p.metadata, **into.metadata}
            for modality in ("abc", "mtf"):
                text = getattr(p, modality)
                if text:
                    _set(into, modality, text, p.sources[modality])
    return list(merged.values())


def _set(piece: PieceInput, modality: str, text: str, rel: str) -> None:
    if getattr(piece, modality) is None:
        setattr(piece, modality, text)
        piece.sources[modality] = rel
