"""What conversion accepts, how it reads input bytes, and how it fails."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from clamp2_engine.types import (  # noqa: F401 - defined in clamp2_engine.types, re-exported here
    ABC_SUFFIXES,
    MIDI_SUFFIXES,
    MTF_SUFFIXES,
    MUSIC21_SUFFIXES,
    MUSICXML_SUFFIXES,
    SCORE_SUFFIXES,
)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Inputs larger than this are refused (``--max-size``): no real score or MIDI file comes near it."""


class ConversionError(Exception):
    """A piece could not be converted; ``stage`` says where (read, decode, xml2abc, interleave, ...)."""

    def __init__(self, stage: str, reason: str, final: bool = False):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
        self.final = final  # no fallback can help (e.g. malformed XML)


def source_kind(path: str | os.PathLike) -> str | None:
    """``musicxml``, ``abc``, ``music21``, ``midi``, ``mtf`` or None, from the file name."""
    suffix = Path(path).suffix.lower()
    for kind, suffixes in (
        ("musicxml", MUSICXML_SUFFIXES),
        ("abc", ABC_SUFFIXES),
        ("music21", MUSIC21_SUFFIXES),
        ("midi", MIDI_SUFFIXES),
        ("mtf", MTF_SUFFIXES),
    ):
        if suffix in suffixes:
            return kind
    return None


def read_input(path: str | os.PathLike, max_bytes: int | None = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of ``path``, refusing empty files and files over ``max_bytes``."""
    try:
        size = os.path.getsize(path)
        if max_bytes is not None and size > max_bytes:
            raise ConversionError("read", f"file is {size:,} bytes, over the {max_bytes:,}-byte limit")
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConversionError("read", f"{type(exc).__name__}: {exc.strerror or exc}") from exc
    if not data.strip():
        raise ConversionError("read", "empty file")
    return data


def looks_binary(data: bytes) -> bool:
    """True for data that is clearly not text: NUL bytes or many control characters."""
    head = data[:65536]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls > max(8, len(head) // 100)


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode text in an unknown encoding: UTF-8 (BOM allowed), UTF-16 with a BOM, then cp1252, then
    Latin-1. Returns ``(text, encoding)``; binary data raises :class:`ConversionError`."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise ConversionError("decode", f"bad UTF-16: {exc.reason}") from exc
    if looks_binary(data):
        raise ConversionError("decode", "binary data, not a text file")
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(encoding), encoding.replace("-sig", "")
        except UnicodeDecodeError:
            continue
    raise ConversionError("decode", "undecodable text")  # pragma: no cover - latin-1 decodes anything


class Piece(NamedTuple):
    """One converted piece: output name suffix (``""`` for the only one), its text, and notes on how it
    was made (fallbacks taken, encoding guessed)."""

    suffix: str
    text: str
    notes: tuple[str, ...] = ()


def first_success(attempts: list[tuple[str, Callable[[], object]]]) -> tuple[object, list[str]]:
    """Run ``(note, fn)`` attempts in order; return the first result and the notes of the fallback taken.
    When all fail, raise the first failure with the others' reasons appended."""
    errors: list[tuple[str, ConversionError]] = []
    for note, fn in attempts:
        try:
            return fn(), ([note] if note else [])
        except ConversionError as exc:
            if exc.stage != "skip":  # "skip": the attempt does not apply to this input
                errors.append((note, exc))
            if exc.final:
                break
        except Exception as exc:  # a library bug on odd input is a failed attempt, not a crash
            errors.append((note, ConversionError(note or "convert", f"{type(exc).__name__}: {exc}")))
    (_, first), later = errors[0], errors[1:]
    others = "; ".join(f"{note or exc.stage}: {exc.reason}" for note, exc in later)
    raise ConversionError(first.stage, first.reason + (f" (fallbacks failed: {others})" if others else ""))
