"""The lexical side of a point: a sparse BM25 vector over the words a person would type to find it.

Title (twice: it is what a known-item query names), composer, lyricist, work title, genres, tags,
instruments, ensembles, era, meter, key, collection and corpus names, the file's stem, and every summary
(English and the other language). Tokens are Unicode words (numbers kept: "BWV 278", "6/8"), lower case,
accents folded ("fur elise" finds "Für Elise"), with no stemming (names are not English) and without the
stop words of the languages summaries are mostly written in (a piece that shares only "a" or "die" with a
query is not a lexical match). The embedder is Qdrant's own ``Bm25`` from ``qdrant-edge-py``; the
collection's sparse vector has the IDF modifier, so the engine (Edge or a server) weighs rare words up.
Both engines are written with the vectors made here, so their tokens are identical.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath
from typing import Any

LEXICAL = "lexical"  # the sparse vector's name
TEXT_FIELDS = ("title", "title", "composer")  # the title counts twice
META_FIELDS = (
    "title",
    "work_title",
    "catalog",
    "opus",
    "composer",
    "lyricist",
    "arranger",
    "genres",
    "tags",
    "instruments",
    "ensembles",
    "era",
    "meter",
    "key",
    "collection",
    "book",
    "origin",
)
SPLIT_STEM = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])|[_\-.]+")
MAX_CHARS = 20_000  # of one point's lexical text
STOPWORD_LANGUAGES = ("English", "German", "French", "Spanish", "Italian", "Portuguese", "Dutch")


@dataclass(frozen=True)
class SparseVector:
    """Non-zero dimensions (token hashes) and their weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)


@cache
def _model() -> Any:
    import qdrant_edge as qe

    return qe.Bm25(
        qe.Bm25Config(
            avg_len=64,
            tokenizer=qe.TokenizerType.Word,
            lowercase=True,
            ascii_folding=True,
            stopwords=qe.StopwordsSet(languages={getattr(qe.Language, name) for name in STOPWORD_LANGUAGES}),
            stemmer=qe.DisabledStemmer(),
        )
    )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list | tuple):
        return [s for v in value[:64] for s in _strings(v)]
    if isinstance(value, Mapping):  # {"language": ..., "summary": ...}
        return _strings(value.get("summary"))
    return []


def lexical_text(payload: Mapping[str, Any]) -> str:
    """The words a point is found by (see the module's description), from a payload whose metadata is
    under its canonical names (as :func:`~clamp2_engine.store.fields.with_keys` leaves it)."""
    meta = payload.get("metadata") if isinstance(payload.get("metadata"), Mapping) else {}
    parts = [s for f in TEXT_FIELDS for s in _strings(payload.get(f))]
    parts += [s for f in META_FIELDS for s in _strings(meta.get(f))]
    parts += _strings(payload.get("corpus"))
    source = payload.get("source")
    if isinstance(source, str) and source:
        parts.append(SPLIT_STEM.sub(" ", PurePosixPath(source).stem))
    parts += _strings(payload.get("summary_en")) + _strings(payload.get("summary_nen"))
    return "\n".join(p for p in parts if p.strip())[:MAX_CHARS]


def document_vector(payload: Mapping[str, Any]) -> SparseVector:
    """The BM25 document vector of a point's payload (term frequencies; the engine applies IDF)."""
    return _sparse(_model().embed_document(lexical_text(payload)))


def query_vector(text: str) -> SparseVector:
    """A query's words, each weighted 1."""
    return _sparse(_model().embed_query(text[:MAX_CHARS]))


def _sparse(vector: Any) -> SparseVector:
    pairs = sorted(zip(vector.indices, vector.values, strict=True))
    return SparseVector(tuple(int(i) for i, _ in pairs), tuple(float(v) for _, v in pairs))
