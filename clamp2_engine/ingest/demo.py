"""The offline demo: a few hundred pieces of music21's corpus, prepared for the shipped ``demo`` model.

The pieces are listed in ``clamp2_engine/assets/demo/pieces.jsonl`` (made when the model was built, with
their metadata from music21's corpus index). :func:`prepare_demo_corpus` converts them from the music21
installed here into a seed-layout folder (``abc/`` + ``items.jsonl``) that ``ingest`` reads; pieces already
converted are kept, so a second run converts nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clamp2_engine.checkpoints import ASSETS
from clamp2_engine.ingest.music21_corpus import Piece, convert_pieces, corpus_root, display_title
from clamp2_engine.store.fields import canonical

PIECES_FILE = ASSETS / "demo" / "pieces.jsonl"
DEMO_COLLECTION = "demo"
DEMO_CORPUS = "music21"  # the corpus name in point ids


@dataclass(frozen=True)
class DemoQuery:
    """An example search and what the top hits should share with it (payload field -> value)."""

    text: str
    expect: dict[str, Any]
    language: str = "English"


QUERIES = (
    DemoQuery("a chorale by J.S. Bach for four voices", {"composer": "J.S. Bach", "voices": 4}),
    DemoQuery("an Irish jig in 6/8 time", {"genre": "jig", "meter": "6/8"}),
    DemoQuery(
        "Madrigal von Monteverdi für fünf Stimmen", {"composer": "Monteverdi", "genre": "madrigal"}, "German"
    ),
)


@dataclass
class DemoCorpus:
    """The prepared folder and what preparing it did."""

    root: Path
    pieces: int = 0
    converted: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (piece or file, reason)


def demo_pieces(limit: int | None = None) -> list[Piece]:
    """The demo's pieces in a stable order; with ``limit``, that many spread evenly over the list (so
    every collection keeps its share)."""
    rows = [json.loads(line) for line in PIECES_FILE.read_text("utf-8").splitlines() if line.strip()]
    pieces = [Piece(r["collection"], r["path"], r["number"], r["name"], r["fields"]) for r in rows]
    if limit and limit < len(pieces):
        pieces = [pieces[i * len(pieces) // limit] for i in range(limit)]
    return pieces


def _pick(converted: list[tuple[str, str]], number: int | None) -> str | None:
    """The interleaved ABC of tune ``number`` (``_<X>`` suffix) or of the only piece of a file."""
    for suffix, abc in converted:
        if (number is None and len(converted) == 1) or suffix == f"_{number}":
            return abc
    return None


def prepare_demo_corpus(dst: str | Path, limit: int | None = None, jobs: int = 2) -> DemoCorpus:
    """Convert the demo pieces from music21's corpus into ``dst`` (seed layout); keeps what is there."""
    from clamp2_engine.paths import atomic_write_text

    dst = Path(dst)
    pieces = demo_pieces(limit)
    out = DemoCorpus(dst, len(pieces))
    todo: dict[str, list[Piece]] = defaultdict(list)
    for p in pieces:
        if not (dst / "abc" / f"{p.name}.abc").is_file():
            todo[p.path].append(p)
    if todo:
        root = corpus_root()
        files = [(todo[rel][0].collection, root / rel) for rel in sorted(todo)]
        for _c, path, converted, error in convert_pieces(files, jobs):
            for p in todo[path.relative_to(root).as_posix()]:
                abc = _pick(converted or [], p.number)
                if abc is None:
                    out.problems.append((p.name, error or f"tune {p.number} not found in {p.path}"))
                    continue
                atomic_write_text(dst / "abc" / f"{p.name}.abc", abc)
                out.converted += 1
    items = [
        {"title": p.fields.get("title") or display_title(p.path, p.number), **p.as_item(f"abc/{p.name}.abc")}
        for p in pieces
        if (dst / "abc" / f"{p.name}.abc").is_file()
    ]
    text = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
    target = dst / "items.jsonl"
    if not target.is_file() or target.read_text("utf-8") != text:
        atomic_write_text(target, text)
    return out


def matches(payload: dict[str, Any], expect: dict[str, Any]) -> bool:
    """Whether a hit's payload has every expected field value (strings compared case-insensitively; a
    list field, such as ``genres``, has it among its values)."""
    for key, want in expect.items():
        key = canonical(key)
        got = payload.get(key, (payload.get("metadata") or {}).get(key))
        values = got if isinstance(got, list) else [got]
        if isinstance(want, str):
            if not any(isinstance(v, str) and v.casefold() == want.casefold() for v in values):
                return False
        elif want not in values:
            return False
    return True
