"""What a collection holds, defined once: vector names, point ids, payload fields, the model record.

One point per piece, named vectors ``abc`` / ``mtf`` (music) and ``text`` (the piece's English summary),
cosine distance; a vector is absent when the piece lacks that modality; and a sparse ``lexical`` vector
(BM25, :mod:`.lexical`) over the words the piece is found by. The payload fields people filter by are
defined in :mod:`.fields` (one name per concept, display values, and the folded ``keys``). The record names the model that made the vectors,
so that a collection is never mixed with another model's vectors. ``docs/schema.md`` describes the
layout for services that query it directly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp2_engine.errors import CollectionError, ModelMismatchError, about
from clamp2_engine.store.fields import KEYS, with_keys  # noqa: F401 - re-exported
from clamp2_engine.store.lexical import LEXICAL, SparseVector
from clamp2_engine.store.quantization import DEFAULT
from clamp2_engine.store.quantization import quantization as quantization_of
from clamp2_engine.types import VECTORS

if TYPE_CHECKING:  # pragma: no cover
    from clamp2_engine.identity import ModelIdentity

# 2: payloads carry `keys`; 3: canonical field names, word-indexed `keys`, lexical vectors; 4: lexical
# vectors with the words of scripts written without spaces (`collections reindex` upgrades, no re-embedding)
SCHEMA_VERSION = 4
UNSPACED_WORDS_SCHEMA = 4
META_KEY = "clamp2_engine"
ID_NAMESPACE = uuid.UUID("6f1c2a52-3d0e-5b7a-9a43-c1a2f0e8b7d4")
# the point holding the model record where a server keeps no collection metadata (Qdrant < 1.16)
RECORD_ID = str(uuid.uuid5(ID_NAMESPACE, "clamp2-engine collection record"))


STATE_FIELDS = ("unit", "unit_hash", "unit_parts")  # what idempotent ingest reads back


def point_id(piece_id: str) -> str:
    """The point id of a piece: a UUID derived from its identity string (stable across runs)."""
    return str(uuid.uuid5(ID_NAMESPACE, piece_id))


def piece_identity(corpus: str, unit: str, part: str = "") -> str:
    """``corpus:unit``, with ``#part`` for one of several pieces of a file (an ABC tune book, an opus)."""
    return f"{corpus}:{unit}" + (f"#{part}" if part else "")


@dataclass
class Point:
    """A point to write, or one read back: id, named vectors, payload."""

    id: str
    vectors: dict[str, np.ndarray | list[float] | SparseVector] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.vectors) - {*VECTORS, LEXICAL}
        if unknown:
            raise ValueError(f"unknown vector names {sorted(unknown)}")

    def vector_lists(self) -> dict[str, list[float]]:
        """The dense vectors as lists of floats."""
        return {
            k: np.asarray(v, dtype=np.float32).tolist()
            for k, v in self.vectors.items()
            if not isinstance(v, SparseVector)
        }

    @property
    def sparse(self) -> dict[str, SparseVector]:
        return {k: v for k, v in self.vectors.items() if isinstance(v, SparseVector)}


@dataclass
class Hit:
    """One search result: rank, point id, score, the vector that scored it, the payload."""

    rank: int
    id: str
    score: float
    modality: str
    payload: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        p = {k: v for k, v in self.payload.items() if k != KEYS}
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "id": self.id,
            "modality": self.modality,
            "title": p.get("title"),
            "composer": p.get("composer"),
            "source": p.get("source"),
            "corpus": p.get("corpus"),
            "payload": p,
        }


@dataclass
class UnitState:
    """The points a unit (a source file, or a metadata item) has in the collection."""

    ids: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    parts: int = 0

    def complete(self, unit_hash: str) -> bool:
        """All of the unit's points are there and were made from content hashed ``unit_hash``."""
        return bool(self.ids) and len(self.ids) == self.parts and all(h == unit_hash for h in self.hashes)


# --- the model record ---------------------------------------------------------------------------------


@dataclass
class CollectionRecord:
    """What a collection stores about itself: the model, how to load it again, the schema version."""

    model: dict[str, Any]
    model_source: dict[str, str | None] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    created: str = ""
    corpora: dict[str, str] = field(default_factory=dict)  # corpus name -> the folder it was ingested from
    lexical: bool = False  # points carry the sparse BM25 vector (schema 3; `collections reindex` adds it)
    # the points the collection holds, kept at every write (fewer on open: points were lost); None: a
    # collection made before it was kept
    points: int | None = None
    # how the dense vectors are kept (:mod:`.quantization`); "none" for a collection made before the choice
    quantization: str = "none"

    def as_dict(self) -> dict[str, Any]:
        return {
            "quantization": self.quantization,
            "schema": self.schema,
            "model": self.model,
            "model_source": self.model_source,
            "created": self.created,
            "corpora": self.corpora,
            "lexical": self.lexical,
            "points": self.points,
        }

    @classmethod
    def from_dict(cls, meta: Any, name: str) -> CollectionRecord:
        """The record stored as ``meta``; :class:`CollectionError` when it is not one."""
        if not isinstance(meta, Mapping) or not isinstance(meta.get("model"), Mapping):
            raise CollectionError(f"collection {name!r} was not made by clamp2-engine (no model record)")
        return cls(
            dict(meta["model"]),
            dict(meta.get("model_source") or {}),
            int(meta.get("schema", 1)),
            str(meta.get("created", "")),
            {str(k): str(v) for k, v in (meta.get("corpora") or {}).items()},
            bool(meta.get("lexical", False)),
            _count(meta.get("points")),
            str(meta.get("quantization") or "none"),
        )

    @property
    def dim(self) -> int:
        return int(self.model["embed_dim"])

    def describe(self) -> str:
        sha = str(self.model.get("checkpoint_sha256", ""))[:12]
        return f"{self.model.get('name')} (sha256 {sha}..., {self.dim}-d)"


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def new_record(
    identity: ModelIdentity, source: Mapping[str, Any], quantization: str | None = None
) -> CollectionRecord:
    """The record of a new collection for ``identity``, loadable again from ``source``, its vectors kept as
    ``quantization`` says (``None``: the default, :data:`clamp2_engine.store.quantization.DEFAULT`)."""
    if identity.kind != "clamp2":
        raise ModelMismatchError(f"collections need a CLaMP 2 checkpoint; {identity.name} is {identity.kind}")
    kind = quantization_of(quantization or DEFAULT).kind
    return CollectionRecord(
        identity.as_dict(), dict(source), SCHEMA_VERSION, now_iso(), lexical=True, points=0, quantization=kind
    )


def model_source(
    model_spec: str | os.PathLike | None, text_model_spec: str | os.PathLike | None
) -> dict[str, Any]:
    """How to load the model again: local paths made absolute, names (``clamp2``, ``hf:...``, a Hub text
    model) kept."""
    from clamp2_engine.checkpoints import is_model_name

    def norm(spec: str | os.PathLike | None) -> str | None:
        if spec is None or is_model_name(spec):
            return None if spec is None else os.fspath(spec)
        p = Path(os.fspath(spec)).expanduser()
        return os.fspath(p.resolve()) if p.exists() else os.fspath(spec)

    return {"model": norm(model_spec), "text_model": norm(text_model_spec)}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_model(record: CollectionRecord, identity: ModelIdentity | Mapping[str, Any], name: str) -> None:
    """Refuse a model other than the one that made the collection."""
    ident = identity.as_dict() if hasattr(identity, "as_dict") else dict(identity)
    same = (
        ident.get("checkpoint_sha256") == record.model.get("checkpoint_sha256")
        and int(ident.get("embed_dim", -1)) == record.dim
        and ident.get("kind") == record.model.get("kind")
    )
    if not same:
        raise about(
            ModelMismatchError(
                f"collection {name!r} holds vectors of {record.describe()}, not of "
                f"{ident.get('name')} (sha256 {str(ident.get('checkpoint_sha256'))[:12]}..., "
                f"{ident.get('embed_dim')}-d): use the model "
                f"{record.model_source.get('model') or record.model.get('name')}, another collection, or drop "
                f"collection {name!r} first"
            ),
            "model",
        )
