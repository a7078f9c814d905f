"""The payload fields people search by, defined once: one name per concept, display values kept.

Ingest finds the same concept under several names (``genre`` / ``genres``, ``composers``, ``instrument``);
:func:`canonical_metadata` maps them to one (:data:`ALIASES`), so that filters, facets and the page speak
of ``genres`` alone. Display values stay as the source wrote them (``J.S. Bach``): they are what facets
count and what ``key==value`` matches exactly. Every point also carries ``keys``, a folded copy of the
same fields (lower case, accents removed) with a full-text index, which ``key=value`` matches word by
word (``composer=bach`` finds ``J.S. Bach``). ``docs/schema.md`` lists the fields.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

KEYS = "keys"  # the payload field holding the folded, word-indexed copy of the filter fields

# payload fields at the top level of every point; any other filter key is looked up under "metadata."
TOP_FIELDS = (
    "piece_id",
    "corpus",
    "unit",
    "unit_hash",
    "unit_parts",
    "part",
    "title",
    "composer",
    "source",
    "sources",
    "formats",
    "modalities",
    "lengths",
    "metadata",
    "summary_en",
    "summary_nen",
    "model",
    "ingested_at",
)
# top-level fields copied into `keys` (with every short metadata field)
KEY_FIELDS = ("corpus", "unit", "title", "composer", "source", "formats", "modalities", "part")
# metadata fields with a word index under `keys` and a keyword index on their display values
INDEXED_METADATA = (
    "genres",
    "tags",
    "instruments",
    "ensembles",
    "meter",
    "key",
    "voices",
    "era",
    "collection",
    "lyricist",
    "work_title",
    "catalog",
)
# the other names ingest meets for a concept -> its one name
ALIASES = {
    "genre": "genres",
    "style": "genres",
    "styles": "genres",
    "tag": "tags",
    "keywords": "tags",
    "instrument": "instruments",
    "instrumentation": "instruments",
    "ensemble": "ensembles",
    "composers": "composer",
    "author": "composer",
    "lyricists": "lyricist",
    "poet": "lyricist",
    "time_signature": "meter",
    "timesig": "meter",
    "key_signature": "key",
    "movement_title": "title",
    "alt_titles": "titles",
    "alternative_titles": "titles",
    "subtitles": "titles",
    "subtitle": "titles",
    "name": "title",
    "work": "work_title",
    "catalogue": "catalog",
    "copyright": "rights",
    "movement_number": "movement",
    "period": "era",
}
LIST_FIELDS = frozenset({"genres", "tags", "instruments", "ensembles", "titles"})  # always lists
# fields whose display values facets count (a keyword index each); the rest are filterable by words
FACETS = ("composer", "genres", "tags", "instruments", "ensembles", "meter", "key", "era", "collection")
MAX_KEY_VALUES = 32  # a metadata list longer than this is not copied into `keys`


def canonical(name: str) -> str:
    """The one name of a field (``genre`` -> ``genres``); unknown names are kept."""
    return ALIASES.get(name, name)


def display_path(name: str) -> str:
    """Where a field's display value lives in the payload: top level, else under ``metadata``."""
    name = canonical(name)
    return name if name in TOP_FIELDS else f"metadata.{name}"


def canonical_metadata(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """``meta`` with every field under its one name (:data:`ALIASES`); list fields made lists. Where two
    names meet, the canonical one's value comes first and the values are merged without repeats."""
    out: dict[str, Any] = {}
    for name, value in sorted((meta or {}).items(), key=lambda kv: kv[0] in ALIASES):
        key = canonical(str(name))
        if key in LIST_FIELDS or (key in out and isinstance(out[key], list)):
            merged = list(out.get(key) or []) if isinstance(out.get(key), list) else _as_list(out.get(key))
            for v in _as_list(value):
                if v not in merged:
                    merged.append(v)
            out[key] = merged
        elif key not in out:
            out[key] = value
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def fold(value: Any) -> str:
    """The form values are compared in: case-folded, accents removed, trimmed; numbers as text."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = unicodedata.normalize("NFKD", str(value).strip().casefold())
    return "".join(c for c in text if not unicodedata.combining(c))


def _key_values(value: Any) -> str | list[str] | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        return fold(value) if str(value).strip() else None
    if isinstance(value, list) and 0 < len(value) <= MAX_KEY_VALUES:
        out = [fold(v) for v in value if isinstance(v, str | int | float) and not isinstance(v, bool)]
        return [v for v in out if v] or None
    return None


def search_keys(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The folded copy of ``payload``'s filterable fields (its ``keys``): the top-level keyword fields and
    every metadata field that is text, a number or a short list of them, under their canonical names. A
    top-level field wins over a metadata field of the same name."""
    keys: dict[str, Any] = {}
    meta = payload.get("metadata")
    if isinstance(meta, Mapping):
        for name, value in canonical_metadata(meta).items():
            if isinstance(name, str) and (v := _key_values(value)) is not None:
                keys[name] = v
    for name in KEY_FIELDS:
        if (v := _key_values(payload.get(name))) is not None:
            keys[name] = v
    return keys


def with_keys(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` with its metadata under canonical names and its ``keys`` (re)computed."""
    out = {k: v for k, v in payload.items() if k != KEYS}
    if isinstance(out.get("metadata"), Mapping):
        out["metadata"] = canonical_metadata(out["metadata"])
    out[KEYS] = search_keys(out)
    return out


# what a new collection indexes: (payload path, "keyword" | "text")
RAW_INDEXES = ("corpus", "unit")  # exact lookups of ingest's own
WORD_INDEXES = tuple(f"{KEYS}.{f}" for f in (*KEY_FIELDS, *INDEXED_METADATA))
DISPLAY_INDEXES = tuple(display_path(f) for f in FACETS)
INDEXES: tuple[tuple[str, str], ...] = (
    *((k, "keyword") for k in dict.fromkeys((*RAW_INDEXES, *DISPLAY_INDEXES))),
    *((k, "text") for k in WORD_INDEXES),
)
