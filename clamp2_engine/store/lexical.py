"""The lexical side of a point: a sparse BM25 vector over the words a person would type to find it.

Title (twice: it is what a known-item query names), the other titles, composer, lyricist, work title, genres, tags,
instruments, ensembles, era, meter, key, collection and corpus names, the file's stem, and every summary
(English and the other language). Tokens are Unicode words (numbers kept: "BWV 278", "6/8"), lower case,
accents folded ("fur elise" finds "Für Elise"), with no stemming (names are not English) and without the
stop words of the languages summaries are mostly written in (a piece that shares only "a" or "die" with a
query is not a lexical match). Scripts written without spaces (Chinese, Japanese, Korean names, Thai,
Lao, Khmer, Myanmar) also give the words Qdrant's ``Multilingual`` segmenter finds in them and their
character pairs, so that part of a title ("茉莉" of "茉莉花", "さくら" of "さくらさくら") finds it; queries
are tokenized the same way. The embedder is Qdrant's own ``Bm25`` from ``qdrant-edge-py``; the
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
    "titles",  # the other titles a file gives (a second T: line, a translated OTL, a subtitle)
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


# scripts written without spaces between words (Han, kana, Hangul syllables, Thai, Lao, Khmer, Myanmar):
# Qdrant's Word tokenizer makes a whole run of them one token
UNSPACED = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
    "\u0e00-\u0eff\u1780-\u17ff\u1000-\u109f\U00020000-\U0002a6df]+"
)
LEXICAL_VERSION = 2  # 2: words of unspaced scripts (segmented, and their character pairs) beside the runs


@cache
def _model(tokenizer: str = "Word") -> Any:
    import qdrant_edge as qe

    return qe.Bm25(
        qe.Bm25Config(
            avg_len=64,
            tokenizer=getattr(qe.TokenizerType, tokenizer),
            lowercase=True,
            ascii_folding=True,
            stopwords=qe.StopwordsSet(languages={getattr(qe.Language, name) for name in STOPWORD_LANGUAGES}),
            stemmer=qe.DisabledStemmer(),
        )
    )


def unspaced_parts(text: str) -> tuple[str, str]:
    """The runs of unspaced scripts in ``text`` (for Qdrant's ``Multilingual`` tokenizer, which segments
    them into words but drops numbers, so it only ever sees these runs), and their character pairs
    (``茉莉花`` -> ``茉莉 莉花``: part of a name finds the name, whatever a segmenter makes of it)."""
    runs = UNSPACED.findall(text)
    pairs = [run[i : i + 2] for run in runs for i in range(len(run) - 1)]
    return " ".join(runs), " ".join(pairs)


def _embed(text: str, query: bool) -> SparseVector:
    """Word tokens of ``text`` (numbers, ``6/8``, accents folded), with, for unspaced scripts, the words
    of Qdrant's ``Multilingual`` segmenter and character pairs; a token found several ways counts once."""
    runs, pairs = unspaced_parts(text)
    vectors = [(_model(), text)]
    if runs:
        vectors += [(_model("Multilingual"), runs), (_model(), pairs)]
    merged: dict[int, float] = {}
    for model, part in vectors:
        if not part:
            continue
        v = model.embed_query(part) if query else model.embed_document(part)
        for i, w in zip(v.indices, v.values, strict=True):
            merged[int(i)] = max(merged.get(int(i), 0.0), float(w))
    pairs_sorted = sorted(merged.items())
    return SparseVector(tuple(i for i, _ in pairs_sorted), tuple(w for _, w in pairs_sorted))


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
    return _embed(lexical_text(payload), query=False)


def query_vector(text: str) -> SparseVector:
    """A query's words, each weighted 1."""
    return _embed(text[:MAX_CHARS], query=True)
