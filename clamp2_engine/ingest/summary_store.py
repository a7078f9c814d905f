"""Crash-safe JSONL files for the summarizer: locked line appends, and repair of a torn last line.

Every record is one full line written with a single flushed append, so a killed process leaves at most
one torn line at the end of the file; :func:`read_output` truncates it (or drops unparsable lines with an
atomic rewrite) before a run resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clamp2_engine.paths import atomic_write_bytes

try:  # POSIX advisory lock; elsewhere a second writer is simply not detected
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class OutputLockedError(RuntimeError):
    """Another process is appending to the same output file."""


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def read_output(path: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """The JSON-object lines of ``path`` and how many bad lines were removed from the file.

    A torn last line (no final newline, not JSON) is truncated in place; any other unparsable line is
    dropped by rewriting the file atomically. A missing file reads as empty.
    """
    p = Path(path)
    if not p.exists():
        return [], 0
    data = p.read_bytes()
    *lines, tail = data.split(b"\n")
    records: list[dict[str, Any]] = []
    bad = 0
    for line in lines:
        rec = _parse(line)
        if rec is not None:
            records.append(rec)
        elif line.strip():
            bad += 1
    torn = missing_newline = False
    if tail.strip():
        rec = _parse(tail)
        if rec is not None:  # a complete record that lost only its newline
            records.append(rec)
            missing_newline = True
        else:
            torn = True
    if bad:
        atomic_write_bytes(p, b"".join(_encode(r) for r in records))
    elif torn:
        with open(p, "r+b") as fh:
            fh.truncate(len(data) - len(tail))
    elif missing_newline:
        with open(p, "ab") as fh:
            fh.write(b"\n")
    return records, bad + torn


def _parse(line: bytes) -> dict[str, Any] | None:
    from clamp2_engine.jsonl import JsonLineError, parse_object

    try:
        return parse_object(line)
    except JsonLineError:
        return None


def prune_jsonl(path: str | os.PathLike, drop: Callable[[dict[str, Any]], bool]) -> int:
    """Remove the records for which ``drop`` is true (atomic rewrite); returns how many went."""
    records, _ = read_output(path)
    kept = [r for r in records if not drop(r)]
    if len(kept) != len(records):
        atomic_write_bytes(path, b"".join(_encode(r) for r in kept))
    return len(records) - len(kept)


class JsonlAppender:
    """Exclusive appender: one ``write`` is one complete, flushed line. Use as a context manager."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self._open()

    def _open(self):
        fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                raise OutputLockedError(f"{self.path} is being written by another run") from None
        return fh

    def read_existing(self) -> list[dict[str, Any]]:
        """Repair the file (see :func:`read_output`) and return its records; keeps the lock."""
        records, _ = read_output(self.path)
        if os.stat(self.path).st_ino != os.fstat(self._fh.fileno()).st_ino:
            self._fh.close()  # the file was rewritten: append to (and lock) the new one
            self._fh = self._open()
        return records

    def write(self, record: dict[str, Any]) -> None:
        view = memoryview(_encode(record))
        while view:
            n = self._fh.write(view)
            view = view[n:]

    def close(self) -> None:
        if not self._fh.closed:
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
