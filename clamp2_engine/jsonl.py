"""The one JSONL reader: every line that is a JSON object is an item; any other line is an error row.

A line may be hostile — invalid UTF-8, nested too deep for the parser (``RecursionError``), huge, not
JSON, or JSON that is not an object. Each becomes ``(where, reason)`` for that line and the rest of the
file is read; nothing here raises for a line's content.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_LINE_BYTES = 64 * 1024 * 1024  # longer lines are refused unread by the parser


class JsonLineError(ValueError):
    """One line that is not a usable JSON object; the message is the reason."""


def parse_object(raw: bytes | str) -> dict[str, Any]:
    """The JSON object in ``raw`` (one line), or :class:`JsonLineError` saying why not."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_LINE_BYTES:
            raise JsonLineError(f"line of {len(raw):,} bytes is longer than {MAX_LINE_BYTES:,}")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonLineError(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at {exc.start})") from None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise JsonLineError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise JsonLineError("invalid JSON: nested too deep") from None
    except ValueError as exc:  # e.g. integers too long to convert
        raise JsonLineError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise JsonLineError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(line number, object, None)`` for each object line of ``path`` and ``(line number, None, reason)``
    for each other non-blank line. Raises ``OSError`` only when the file cannot be opened."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                yield n, parse_object(raw.rstrip(b"\r\n")), None
            except JsonLineError as exc:
                yield n, None, str(exc)


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The objects of a JSONL file and ``(path:line, reason)`` for every other non-blank line."""
    items: list[dict[str, Any]] = []
    errors: list[tuple[str, str]] = []
    name = os.fspath(Path(path))
    for n, obj, reason in iter_jsonl(path):
        if obj is None:
            errors.append((f"{name}:{n}", str(reason)))
        else:
            items.append(obj)
    return items, errors


MAX_TEXT_FIELD = 4096  # characters of one metadata string kept in a payload


def finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by ``None`` (standard JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """One line of standard JSON (non-finite numbers as null, non-ASCII kept)."""
    return json.dumps(finite(obj), ensure_ascii=False, allow_nan=False)


def capped(obj: Any, limit: int = MAX_TEXT_FIELD, path: str = "", notes: list[str] | None = None) -> Any:
    """``obj`` with non-finite numbers as ``None`` and every string cut to ``limit`` characters; what was
    cut is noted in ``notes`` (e.g. ``"title: 5,242,880 characters cut to 4,096"``)."""
    if isinstance(obj, str):
        if len(obj) > limit:
            if notes is not None:
                notes.append(f"{path or 'value'}: {len(obj):,} characters cut to {limit:,}")
            return obj[:limit]
        return obj
    if isinstance(obj, dict):
        return {k: capped(v, limit, f"{path}.{k}" if path else str(k), notes) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [capped(v, limit, f"{path}[{i}]", notes) for i, v in enumerate(obj)]
    return finite(obj)


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes, safe to echo to a terminal."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
