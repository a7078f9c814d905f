"""One way to turn an exception into the one line a user reads."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None, default: str | None = None) -> str:
    """The first line of ``exc``'s message, cut to ``limit`` characters; ``default`` (the exception's type
    name when ``None``) when the message is empty."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__ if default is None else default
    line = text.splitlines()[0]
    return line[:limit] if limit else line
