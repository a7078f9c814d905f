"""Model input as text: a text file read with clear errors (ABC, MTF and texts alike), and the text
tower's preparation (line de-duplication and the sep join)."""

from __future__ import annotations

import os
from pathlib import Path

MAX_INPUT_BYTES = 32 * 1024 * 1024
MAX_TEXT_LENGTH = 128  # text tokens per window: the reference's MAX_TEXT_LENGTH (its one definition)


def dedupe_lines(text: str) -> list[str]:
    """Non-empty lines of ``text`` in first-occurrence order, each once."""
    return list(dict.fromkeys(line for line in text.split("\n") if line))


def join_for_tokenizer(text: str, sep_token: str) -> str:
    """The reference's text input: de-duplicated lines joined with the tokenizer's sep token."""
    lines = dedupe_lines(text)
    if not lines:
        raise ValueError("empty text")
    return sep_token.join(lines)


class InputError(ValueError):
    """An input that cannot be turned into model input (unreadable, empty, binary, too large)."""


def read_text_file(path: str | os.PathLike, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """Read a text input the way the reference does (UTF-8, universal newlines), with clear errors."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise InputError("empty file")
    if size > max_bytes:
        raise InputError(f"file is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB input limit")
    data = path.read_bytes()
    if b"\x00" in data:
        raise InputError("binary data (NUL bytes), not a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start}); convert it to UTF-8 first") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")
