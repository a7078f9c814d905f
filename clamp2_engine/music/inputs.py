"""A music file as model input: which files are music, a file read or converted to interleaved ABC or
MTF, and one piece of a file as a query (``search --music``, ``POST /search`` with a file)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from clamp2_engine.paths import input_problem
from clamp2_engine.types import ABC_SUFFIXES, MIDI_SUFFIXES, MTF_SUFFIXES, SCORE_SUFFIXES

QUERY_MAX_BYTES = 8 * 1024 * 1024  # a query is one piece: larger files are refused, not read
QUERY_TIMEOUT_S = 60.0


def score_suffixes() -> frozenset[str]:
    """Score formats the converter accepts (MusicXML, ABC, Humdrum...)."""
    return SCORE_SUFFIXES


def accepted_suffixes() -> frozenset[str]:
    return SCORE_SUFFIXES | MIDI_SUFFIXES | MTF_SUFFIXES


def read_ready(path: Path) -> str:
    from clamp2_engine.music.text import read_text_file

    return read_text_file(path)


def score_pieces(
    path: Path, to: str, failed: list | None = None, notes: list | None = None
) -> list[tuple[str, str]]:
    """``(part, text)`` for every piece of a score: interleaved ABC, or MTF rendered through MIDI. With
    ``failed``, the tunes of a book that fail are collected there and the others kept; with ``notes``,
    how each piece was made when it took a fallback (``(part, note)``)."""
    from clamp2_engine.music.convert.score import file_to_pieces

    pieces = file_to_pieces(path, "abc" if to == "abc" else "mtf", failed=failed)
    if notes is not None:
        notes.extend((p.suffix.lstrip("_"), note) for p in pieces for note in p.notes)
    return [(p.suffix.lstrip("_"), p.text) for p in pieces]


def midi_mtf(path: Path) -> str:
    from clamp2_engine.music.convert import midi_to_mtf

    return midi_to_mtf(path)


def conversion_reason(exc: BaseException) -> str:
    from clamp2_engine.music.convert.batch import memory_note
    from clamp2_engine.runlog import describe_error

    stage = getattr(exc, "stage", None)
    reason = getattr(exc, "reason", None)
    if stage and reason:
        return f"{stage}: {memory_note(str(reason))}"
    return memory_note(describe_error(exc))


def score_piece(task: tuple[str, str | None]) -> tuple[str, str | None]:
    """Worker: the interleaved ABC of one piece of a score (tune ``X:`` number ``task[1]`` of a book,
    else the first), and a note naming it when the file holds several."""
    from clamp2_engine.music.convert.common import read_input
    from clamp2_engine.music.convert.score import abc_tune_to_abc, read_abc

    path, wanted = Path(task[0]), task[1]
    if path.suffix.lower() in ABC_SUFFIXES:
        tunes = [(sfx.lstrip("_") or "1", tune) for sfx, tune in read_abc(read_input(path))[0]]
        numbers = [re.search(r"^X:\s*(\d+)", t, re.M) for _n, t in tunes]
        numbers = [m.group(1) if m else n for m, (n, _t) in zip(numbers, tunes, strict=True)]
    else:
        tunes = score_pieces(path, "abc")
        numbers = [str(i) for i in range(1, len(tunes) + 1)]
    if not tunes:
        raise ValueError("no piece in the file")
    if wanted is not None and wanted not in numbers:
        raise ValueError(f"no tune {wanted} in {path.name} (it holds {', '.join(numbers[:20])})")
    index = numbers.index(wanted) if wanted is not None else 0
    text = tunes[index][1]
    if path.suffix.lower() in ABC_SUFFIXES:
        text = abc_tune_to_abc(text).text
    note = None
    if len(tunes) > 1:
        title = re.search(r"^T:\s*(.+)$", tunes[index][1], re.M)
        named = f" ({title.group(1).strip()[:60]})" if title else ""
        note = (
            f"{path.name} holds {len(tunes)} pieces: searching by number {numbers[index]}{named}; "
            "choose another by its number (search --tune N; in the shell, :music PATH N)"
        )
    return text, note


def music_query_input(
    path: str | os.PathLike,
    max_bytes: int = QUERY_MAX_BYTES,
    timeout: float | None = QUERY_TIMEOUT_S,
    tune: str | None = None,
    notes: list[str] | None = None,
) -> tuple[str, str]:
    """``(modality, text)`` model input for a query-by-example file: MTF for MIDI and ``.mtf``,
    interleaved ABC for a score (tune ``X:`` number ``tune`` of a book, else its first piece, named in
    ``notes``). Only a regular file of at most ``max_bytes`` is read; a score is converted in a worker
    process given ``timeout`` seconds (``None``: in this process). Raises ``ValueError`` with the
    reason."""
    p = Path(path)
    suffix = p.suffix.lower()
    problem = input_problem(p, p.parent)
    if problem:
        raise ValueError(f"cannot read {p.name}: {problem}")
    if p.stat().st_size > max_bytes:
        raise ValueError(
            f"{p.name} is {p.stat().st_size / 2**20:.1f} MiB: a query piece may have at most "
            f"{max_bytes / 2**20:.0f} MiB"
        )
    try:
        if suffix in MTF_SUFFIXES:
            return "mtf", read_ready(p)
        if suffix in MIDI_SUFFIXES:
            return "mtf", midi_mtf(p)
        if suffix in score_suffixes():
            if timeout is None:
                text, note = score_piece((str(p), tune))
            else:
                from clamp2_engine.music.convert.batch import PRELOAD, quiet_worker
                from clamp2_engine.workers import run_tasks

                [outcome] = run_tasks(
                    score_piece,
                    [(str(p), tune)],
                    jobs=1,
                    timeout=timeout,
                    initializer=quiet_worker,
                    preload=PRELOAD,
                )
                if not outcome.ok:
                    raise ValueError(outcome.error)
                text, note = outcome.result
            if note and notes is not None:
                notes.append(note)
            return "abc", text
    except Exception as exc:
        from clamp2_engine.workers import without_internals

        reason = without_internals(conversion_reason(exc) if not isinstance(exc, ValueError) else str(exc))
        raise ValueError(f"cannot read {p.name} as music: {reason.removeprefix('decode: ')}") from None
    raise ValueError(f"{p.name}: not a music file ({', '.join(sorted(accepted_suffixes()))})")
