"""Text preparation for the CLaMP 2 text tower: line de-duplication and the sep join."""

from __future__ import annotations

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
