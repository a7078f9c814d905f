"""Where the tests' own data lives (inside the repository) and helpers that refuse to find nothing.

``tests/fixtures/clamp2-parity`` is a byte-for-byte copy of the parity fixture made by running the CLaMP 2
reference code (tiny random-weight checkpoints, inputs converted from music21's corpus, the features its
extractors wrote); ``tests/fixtures/bench-corpus`` holds 60 pieces as ABC, MTF and one-line texts.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PARITY = FIXTURES / "clamp2-parity"
BENCH = FIXTURES / "bench-corpus"


class MissingFixtureError(RuntimeError):
    """A fixture file or folder the tests need is not in the checkout."""


def require(path: Path) -> Path:
    """``path``, or a clear error naming it (never a silently empty test)."""
    if not path.exists():
        raise MissingFixtureError(f"test fixture missing: {path} (is the checkout complete?)")
    return path


def names(folder: Path, pattern: str) -> list[str]:
    """Sorted file names matching ``pattern`` in ``folder``; an error when there are none."""
    found = sorted(p.name for p in require(folder).glob(pattern))
    if not found:
        raise MissingFixtureError(f"no {pattern} files in {folder}: the test would check nothing")
    return found
