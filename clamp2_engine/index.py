"""Collections of CLaMP 2 features in Qdrant: schema, model record, stable ids, upsert and search.

One point per piece, named vectors ``abc`` / ``mtf`` (music) and ``text`` (the piece's English summary),
cosine distance; a vector is absent when the piece lacks that modality. The collection's metadata
records the model that made the vectors, so that a collection is never mixed with another model's
vectors. ``docs/schema.md`` describes the layout for services that query it directly.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp2_engine.store import StoreSpec, tune_local
from clamp2_engine.types import MIDI_SUFFIXES, MODALITIES, MTF_SUFFIXES, MUSIC_VECTORS, VECTORS

if TYPE_CHECKING:  # pragma: no cover
    from qdrant_client import QdrantClient, models

    from clamp2_engine.api import CLaMP2
    from clamp2_engine.identity import ModelIdentity

SCHEMA_VERSION = 1
META_KEY = "clamp2_engine"

ID_NAMESPACE = uuid.UUID("6f1c2a52-3d0e-5b7a-9a43-c1a2f0e8b7d4")
# the point holding the model record where a server keeps no collection metadata (Qdrant < 1.16)
RECORD_ID = str(uuid.uuid5(ID_NAMESPACE, "clamp2-engine collection record"))
MIDI_LIKE = tuple(sorted(MTF_SUFFIXES | MIDI_SUFFIXES))
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
KEYWORD_INDEXES = (
    "corpus",
    "unit",
    "source",
    "title",
    "composer",
    "formats",
    "modalities",
    "metadata.genres",
    "metadata.tags",
    "metadata.instruments",
    "metadata.ensembles",
)


class CollectionError(ValueError):
    """A collection that does not exist, or does not fit the request; one line for the user."""


class CollectionNotFoundError(CollectionError, LookupError):
    pass


class ModelMismatchError(CollectionError):
    """Vectors from one model may not be mixed with (or searched by) another model's."""


# --- identities -------------------------------------------------------------------------------------


def point_id(piece_id: str) -> str:
    """The point id of a piece: a UUID derived from its identity string (stable across runs)."""
    return str(uuid.uuid5(ID_NAMESPACE, piece_id))


def piece_identity(corpus: str, unit: str, part: str = "") -> str:
    """``corpus:unit``, with ``#part`` for one of several pieces of a file (an ABC tune book, an opus)."""
    return f"{corpus}:{unit}" + (f"#{part}" if part else "")


def item_filepaths(item: Mapping[str, Any]) -> list[str]:
    """An item's ``filepaths`` (a string or a list) as normalized POSIX paths, in order, deduplicated."""
    fps = item.get("filepaths")
    if isinstance(fps, str):
        fps = [fps]
    if not isinstance(fps, list):
        return []
    out: list[str] = []
    for fp in fps:
        if isinstance(fp, str) and fp.strip():
            norm = PurePosixPath(fp.strip().replace("\\", "/")).as_posix()
            if norm not in out:
                out.append(norm)
    return out


def item_unit(item: Mapping[str, Any]) -> str:
    """The unit key of a metadata item: its sorted file paths."""
    fps = item_filepaths(item)
    if not fps:
        raise ValueError("item has no filepaths")
    return "item:" + json.dumps(sorted(fps), ensure_ascii=False)


def item_point_id(
    item: Mapping[str, Any],
    *,
    modality: str = "any",
    root: str | os.PathLike,
    corpus: str | None = None,
    units: Mapping[str, UnitState] | None = None,
) -> str:
    """The point id of a metadata item ingested from the corpus at ``root`` (the JSONL's folder).

    With ``units`` (the collection's :func:`unit_states` for that corpus) the item is looked up as it was
    ingested: as a metadata item (seed layout) or as its one file (a plain folder); an item whose piece is
    not there raises ``ValueError`` saying so. Raises ``ValueError`` too when the item has no file that
    gives ``modality`` (no such vector): ABC comes from scores, MTF from MIDI and ``.mtf`` files (and from
    scores rendered to MIDI).
    """
    fps = item_filepaths(item)
    if modality == "abc" and all(fp.lower().endswith(MIDI_LIKE) for fp in fps):
        raise ValueError("item has no .abc file (nor any score)")
    if (
        modality == "mtf"
        and not any(fp.lower().endswith(MIDI_LIKE) for fp in fps)
        and all(fp.lower().endswith(".abc") for fp in fps)
    ):
        raise ValueError("item has no .mtf file (nor any MIDI file or score)")
    corpus = corpus or Path(root).resolve().name
    key = item_unit(item)
    if units is not None:
        if key not in units and len(fps) == 1 and fps[0] in units:
            key = fps[0]  # ingested as a plain folder: the unit is the file
        if key not in units:
            raise ValueError(
                f"not in the collection as part of corpus {corpus!r} (not ingested, or ingested "
                "from another folder: see --corpus)"
            )
        if units[key].parts > 1:
            raise ValueError(f"{fps[0]} holds {units[key].parts} pieces: an item must name one piece")
    return point_id(piece_identity(corpus, key))


# --- the collection and its model record ------------------------------------------------------------


@dataclass
class CollectionRecord:
    """What a collection stores about itself (in the collection's metadata)."""

    model: dict[str, Any]
    model_source: dict[str, str | None] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION
    created: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "model": self.model,
            "model_source": self.model_source,
            "created": self.created,
        }

    @property
    def dim(self) -> int:
        return int(self.model["embed_dim"])

    def describe(self) -> str:
        sha = str(self.model.get("checkpoint_sha256", ""))[:12]
        return f"{self.model.get('name')} (sha256 {sha}..., {self.dim}-d)"


def model_source(
    model_spec: str | os.PathLike | None, text_model_spec: str | os.PathLike | None
) -> dict[str, Any]:
    """How to load the model again: local paths made absolute, names kept."""

    def norm(spec: str | os.PathLike | None) -> str | None:
        if spec is None:
            return None
        p = Path(os.fspath(spec)).expanduser()
        return os.fspath(p.resolve()) if p.exists() else os.fspath(spec)

    return {"model": norm(model_spec), "text_model": norm(text_model_spec)}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_record(client: QdrantClient, name: str) -> CollectionRecord:
    """The record of collection ``name``; :class:`CollectionNotFoundError` / :class:`CollectionError`."""
    if not client.collection_exists(name):
        raise CollectionNotFoundError(f"no collection {name!r} (see `clamp2-engine collections list`)")
    meta = (client.get_collection(name).config.metadata or {}).get(META_KEY)
    if not isinstance(meta, dict):  # a server without collection metadata: the reserved point
        found = client.retrieve(name, [RECORD_ID], with_payload=True)
        meta = (found[0].payload or {}).get(META_KEY) if found else None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise CollectionError(f"collection {name!r} was not made by clamp2-engine (no model record)")
    return CollectionRecord(
        meta["model"],
        meta.get("model_source") or {},
        int(meta.get("schema", 1)),
        str(meta.get("created", "")),
    )


def check_model(record: CollectionRecord, identity: ModelIdentity | Mapping[str, Any], name: str) -> None:
    """Refuse a model other than the one that made the collection."""
    ident = identity.as_dict() if hasattr(identity, "as_dict") else dict(identity)
    same = (
        ident.get("checkpoint_sha256") == record.model.get("checkpoint_sha256")
        and int(ident.get("embed_dim", -1)) == record.dim
        and ident.get("kind") == record.model.get("kind")
    )
    if not same:
        raise ModelMismatchError(
            f"collection {name!r} holds vectors of {record.describe()}, not of "
            f"{ident.get('name')} (sha256 {str(ident.get('checkpoint_sha256'))[:12]}..., {ident.get('embed_dim')}-d): "
            f"use --model {record.model_source.get('model') or record.model.get('name')}, another --collection, "
            f"or `clamp2-engine collections drop {name}` first"
        )


def ensure_collection(
    client: QdrantClient,
    name: str,
    identity: ModelIdentity,
    source: Mapping[str, Any],
) -> CollectionRecord:
    """Create collection ``name`` for ``identity`` (vectors, payload indexes, record) or check that the
    existing one was made by the same model."""
    if identity.kind != "clamp2":
        raise ModelMismatchError(f"collections need a CLaMP 2 checkpoint; {identity.name} is {identity.kind}")
    if client.collection_exists(name):
        record = read_record(client, name)
        check_model(record, identity, name)
        return record
    record = CollectionRecord(identity.as_dict(), dict(source), SCHEMA_VERSION, now_iso())
    create_from_record(client, name, record)
    return record


def create_from_record(client: QdrantClient, name: str, record: CollectionRecord) -> None:
    """Create the collection layout (three cosine vectors, payload indexes) with ``record`` as metadata."""
    from qdrant_client import models

    params = models.VectorParams(size=record.dim, distance=models.Distance.COSINE)
    try:
        client.create_collection(
            name, vectors_config={v: params for v in VECTORS}, metadata={META_KEY: record.as_dict()}
        )
    except ValueError as exc:  # invalid names (local mode)
        raise CollectionError(f"cannot create collection {name!r}: {exc}") from None
    create_payload_indexes(client, name)
    tune_local(client)
    if not (client.get_collection(name).config.metadata or {}).get(META_KEY):
        write_record(client, name, record)


def write_record(client: QdrantClient, name: str, record: CollectionRecord) -> None:
    """Store ``record`` in the collection's metadata, or, on a server that keeps none (Qdrant before
    1.16), in a reserved point without vectors (never a search hit)."""
    from qdrant_client import models

    client.update_collection(name, metadata={META_KEY: record.as_dict()})
    if not (client.get_collection(name).config.metadata or {}).get(META_KEY):
        point = models.PointStruct(id=RECORD_ID, vector={}, payload={META_KEY: record.as_dict()})
        client.upsert(name, points=[point], wait=True)


def create_payload_indexes(client: QdrantClient, name: str) -> None:
    """Keyword indexes on the commonly filtered fields (used by servers; kept for the record locally)."""
    from qdrant_client import models

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Payload indexes have no effect.*")
        for key in KEYWORD_INDEXES:
            client.create_payload_index(name, key, field_schema=models.PayloadSchemaType.KEYWORD)
        client.create_payload_index(name, "unit_parts", field_schema=models.PayloadSchemaType.INTEGER)


def list_collections(client: QdrantClient) -> list[dict[str, Any]]:
    """Name, point count and model of every collection (clamp2-engine's and others)."""
    out = []
    for c in sorted(client.get_collections().collections, key=lambda c: c.name):
        try:
            rec: CollectionRecord | None = read_record(client, c.name)
        except CollectionError:
            rec = None
        out.append(
            {
                "name": c.name,
                "points": piece_count(client, c.name),
                "model": rec.model.get("name") if rec else None,
                "dim": rec.dim if rec else None,
                "created": rec.created if rec else None,
            }
        )
    return out


def collection_info(client: QdrantClient, name: str) -> dict[str, Any]:
    """The record, point and per-vector counts, and payload indexes of collection ``name``."""
    from qdrant_client import models

    record = read_record(client, name)
    info = client.get_collection(name)
    vectors = {
        v: client.count(
            name, exact=True, count_filter=models.Filter(must=[models.HasVectorCondition(has_vector=v)])
        ).count
        for v in VECTORS
    }
    return {
        "name": name,
        "points": piece_count(client, name),
        "vectors": vectors,
        "distance": "cosine",
        "dim": record.dim,
        **record.as_dict(),
        "payload_indexes": sorted((info.payload_schema or {}).keys()),
    }


def piece_count(client: QdrantClient, name: str) -> int:
    """Points of collection ``name``, not counting a reserved record point."""
    n = client.count(name, exact=True).count
    return n - 1 if n and client.retrieve(name, [RECORD_ID], with_payload=False) else n


def drop_collection(client: QdrantClient, name: str) -> None:
    if not client.collection_exists(name):
        raise CollectionNotFoundError(f"no collection {name!r}")
    client.delete_collection(name)
    _forget(client, name)


def copy_collection(
    src: QdrantClient,
    dst: QdrantClient,
    name: str,
    dst_name: str | None = None,
    page: int = 256,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy collection ``name`` (record, vectors, payloads) from ``src`` to ``dst``; idempotent (same ids).

    An existing target must hold the same model's vectors. Returns the number of points copied.
    """
    from qdrant_client import models

    dst_name = dst_name or name
    record = read_record(src, name)
    if dst.collection_exists(dst_name):
        check_model(record, read_record(dst, dst_name).model, dst_name)
    else:
        create_from_record(dst, dst_name, record)
    copied, offset = 0, None
    while True:
        points, offset = src.scroll(name, limit=page, offset=offset, with_payload=True, with_vectors=True)
        if points:
            dst.upsert(
                dst_name,
                points=[
                    models.PointStruct(id=p.id, vector=p.vector or {}, payload=p.payload) for p in points
                ],
                wait=True,
            )
            _forget(dst, dst_name)
            copied += len(points)
            if progress:
                progress(len(points))
        if offset is None:
            return copied


# --- writing ---------------------------------------------------------------------------------------


@dataclass
class UnitState:
    """The points a unit (a source file, or a metadata item) has in the collection."""

    ids: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    parts: int = 0

    def complete(self, unit_hash: str) -> bool:
        """All of the unit's points are there and were made from content hashed ``unit_hash``."""
        return bool(self.ids) and len(self.ids) == self.parts and all(h == unit_hash for h in self.hashes)


def unit_states(client: QdrantClient, name: str, corpus: str, page: int = 2048) -> dict[str, UnitState]:
    """Every unit of ``corpus`` already in collection ``name``."""
    from qdrant_client import models

    flt = models.Filter(must=[models.FieldCondition(key="corpus", match=models.MatchValue(value=corpus))])
    states: dict[str, UnitState] = {}
    offset = None
    while True:
        points, offset = client.scroll(
            name,
            scroll_filter=flt,
            limit=page,
            offset=offset,
            with_payload=["unit", "unit_hash", "unit_parts"],
            with_vectors=False,
        )
        for p in points:
            pl = p.payload or {}
            st = states.setdefault(str(pl.get("unit")), UnitState())
            st.ids.append(str(p.id))
            st.hashes.append(str(pl.get("unit_hash")))
            st.parts = int(pl.get("unit_parts") or 0)
        if offset is None:
            return states


def make_point(pid: str, vectors: Mapping[str, np.ndarray], payload: dict[str, Any]) -> models.PointStruct:
    from qdrant_client import models

    unknown = set(vectors) - set(VECTORS)
    if unknown:
        raise ValueError(f"unknown vector names {sorted(unknown)}")
    return models.PointStruct(
        id=pid,
        vector={k: np.asarray(v, dtype=np.float32).tolist() for k, v in vectors.items()},
        payload=payload,
    )


def upsert(client: QdrantClient, name: str, points: Sequence[models.PointStruct]) -> None:
    if points:
        client.upsert(name, points=list(points), wait=True)
        _forget(client, name)


def delete_ids(client: QdrantClient, name: str, ids: Iterable[str]) -> int:
    from qdrant_client import models

    ids = list(ids)
    if ids:
        client.delete(name, points_selector=models.PointIdsList(points=ids), wait=True)
        _forget(client, name)
    return len(ids)


# --- the embedded store's search matrices ------------------------------------------------------------
# Qdrant's local mode re-normalizes every stored vector on every query (~70 ms per 10k points here).
# The embedded store belongs to this process alone (its folder is locked), so its vectors can be kept
# as one normalized matrix per vector name and searched with a single matrix product. Writes made
# through this module drop the matrices; they are rebuilt (one scroll) on the next search.
_MATRICES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forget(client: QdrantClient, name: str) -> None:
    cached = _MATRICES.get(client)
    if cached:
        for key in [k for k in cached if k[0] == name]:
            del cached[key]


def _matrix(client: QdrantClient, name: str, vname: str) -> tuple[list[str], np.ndarray]:
    """Ids and L2-normalized vectors of every point of ``name`` that has vector ``vname``."""
    cached = _MATRICES.setdefault(client, {})
    if (name, vname) not in cached:
        found = _local_arrays(client, name, vname) or _scrolled_arrays(client, name, vname)
        ids, m = found
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        cached[(name, vname)] = (ids, (m / np.where(norms > 0, norms, 1.0)).astype(np.float32))
    return cached[(name, vname)]


def _local_arrays(client: QdrantClient, name: str, vname: str) -> tuple[list[str], np.ndarray] | None:
    """The vectors as the embedded store holds them in memory (its internal layout: checked, and
    ``None`` when it differs)."""
    coll = getattr(getattr(client, "_client", None), "collections", {}).get(name)
    try:
        n = len(coll.payload)
        vectors = np.asarray(coll.vectors[vname][:n], dtype=np.float32)
        gone = np.asarray(coll.deleted[:n], dtype=bool) | np.asarray(
            coll.deleted_per_vector[vname][:n], dtype=bool
        )
        if vectors.ndim != 2 or len(vectors) != n or len(gone) != n or len(coll.ids_inv) < n:
            return None
        keep = np.flatnonzero(~gone)
        return [str(coll.ids_inv[j]) for j in keep], vectors[keep]
    except (AttributeError, KeyError, TypeError, IndexError, ValueError):
        return None


def _scrolled_arrays(client: QdrantClient, name: str, vname: str) -> tuple[list[str], np.ndarray]:
    """The vectors read through the public API (slower: every point is a Python object)."""
    ids: list[str] = []
    rows: list[list[float]] = []
    offset = None
    while True:
        pts, offset = client.scroll(name, limit=4096, offset=offset, with_payload=False, with_vectors=[vname])
        for p in pts:
            vec = p.vector.get(vname) if isinstance(p.vector, dict) else None
            if vec is not None:
                ids.append(str(p.id))
                rows.append(vec)
        if offset is None:
            return ids, np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)


def _local_top(
    client: QdrantClient, name: str, queries: list[np.ndarray], vname: str, limit: int
) -> list[list[tuple[str, float]]]:
    ids, m = _matrix(client, name, vname)
    if not ids or not queries:
        return [[] for _ in queries]
    q = np.stack(queries)
    q = q / np.where((n := np.linalg.norm(q, axis=1, keepdims=True)) > 0, n, 1.0)
    scores = q @ m.T
    k = min(limit, len(ids))
    out = []
    for row in scores:
        top = np.argpartition(-row, k - 1)[:k] if k < len(ids) else np.arange(len(ids))
        out.append([(ids[j], float(row[j])) for j in top])
    return out


# --- searching -------------------------------------------------------------------------------------


@dataclass
class Hit:
    rank: int
    id: str
    score: float
    modality: str
    payload: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        p = self.payload
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


FILTER_KEY = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")


def parse_filters(exprs: Iterable[str]) -> models.Filter | None:
    """``key=value`` (value may be ``a,b`` for any of them), ``key!=value``; all must hold.

    Keys are payload fields (``composer``, ``corpus``, ``formats``...), else fields of the piece's
    metadata (``genres`` means ``metadata.genres``); dotted keys are used as given. A numeric value
    also matches the number.
    """
    from qdrant_client import models

    must: list[Any] = []
    must_not: list[Any] = []
    for expr in exprs:
        negate = "!=" in expr
        key, sep, value = expr.partition("!=" if negate else "=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"bad filter {expr!r}: expected key=value or key!=value")
        if not FILTER_KEY.fullmatch(key):
            raise ValueError(
                f"bad filter key {key!r}: a payload field name (letters, digits, _ and -, dotted for nested "
                "fields such as metadata.genres)"
            )
        if "." not in key and key not in TOP_FIELDS:
            key = f"metadata.{key}"
        values = [v.strip() for v in value.split(",") if v.strip()]
        conds: list[Any] = [models.FieldCondition(key=key, match=models.MatchAny(any=values))]
        numbers = [int(v) for v in values if v.lstrip("-").isdigit()]
        if numbers:
            conds.append(models.FieldCondition(key=key, match=models.MatchAny(any=numbers)))
        cond = conds[0] if len(conds) == 1 else models.Filter(should=conds)
        (must_not if negate else must).append(cond)
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


def _vector_names(modality: str) -> tuple[str, ...]:
    if modality == "any":
        return MUSIC_VECTORS
    if modality not in VECTORS:
        raise CollectionError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    return (modality,)


def search_batch(
    client: QdrantClient,
    name: str,
    vectors: np.ndarray | Sequence[np.ndarray],
    *,
    modality: str = "any",
    limit: int = 10,
    query_filter: models.Filter | None = None,
    with_payload: bool | list[str] = True,
) -> list[list[Hit]]:
    """Nearest points for each query vector; several vector names are fused by each point's best score."""
    from qdrant_client import models

    from clamp2_engine.store import is_local

    names = _vector_names(modality)
    queries = [np.asarray(v, dtype=np.float32) for v in vectors]
    best: list[dict[str, Hit]] = [{} for _ in queries]
    local = is_local(client) and query_filter is None
    if local:  # in process: one matrix product per vector name
        for vname in names:
            for i, row in enumerate(_local_top(client, name, queries, vname, limit)):
                for pid, score in row:
                    if pid not in best[i] or score > best[i][pid].score:
                        best[i][pid] = Hit(0, pid, score, vname, {})
    else:  # one round trip for every query and vector name
        jobs = [(i, vname) for vname in names for i in range(len(queries))]
        requests = [
            models.QueryRequest(
                query=queries[i].tolist(),
                using=vname,
                filter=query_filter,
                limit=limit,
                with_payload=with_payload,
            )
            for i, vname in jobs
        ]
        responses = client.query_batch_points(name, requests=requests) if requests else []
        for (i, vname), response in zip(jobs, responses, strict=True):
            for sp in response.points:
                pid = str(sp.id)
                if pid not in best[i] or sp.score > best[i][pid].score:
                    best[i][pid] = Hit(0, pid, float(sp.score), vname, sp.payload or {})
    results = []
    for hits in best:
        ranked = sorted(hits.values(), key=lambda h: (-h.score, h.id))[:limit]
        for r, h in enumerate(ranked, 1):
            h.rank = r
        results.append(ranked)
    if local:
        _fill_payloads(client, name, results, with_payload)
    return results


def _fill_payloads(
    client: QdrantClient, name: str, results: list[list[Hit]], with_payload: bool | list[str]
) -> None:
    wanted = sorted({h.id for hits in results for h in hits})
    if with_payload is False or not wanted:
        return
    payloads = {str(p.id): p.payload or {} for p in client.retrieve(name, wanted, with_payload=with_payload)}
    for hits in results:
        for hit in hits:
            hit.payload = payloads.get(hit.id, {})


def search(client: QdrantClient, name: str, vector: np.ndarray, **kwargs: Any) -> list[Hit]:
    """Nearest points for one query vector (see :func:`search_batch`)."""
    return search_batch(client, name, [vector], **kwargs)[0]


# --- models for queries ------------------------------------------------------------------------------


def with_record(record: CollectionRecord, options: dict[str, Any]) -> dict[str, Any]:
    """Model options with the unset ones taken from a collection's record (the model that made it, its
    text model and text window)."""
    opts = dict(options)
    opts["model"] = opts.get("model") or record.model_source.get("model")
    opts["text_model"] = opts.get("text_model") or record.model_source.get("text_model")
    opts["max_text_length"] = opts.get("max_text_length") or record.model.get("max_text_length")
    return opts


def load_query_model(
    record: CollectionRecord,
    *,
    model: str | os.PathLike | None = None,
    text_model: str | os.PathLike | None = None,
    load_music: bool = False,
    load_text: bool = True,
    name: str = "",
    **kwargs: Any,
) -> CLaMP2:
    """The model that made the collection, with only the towers a query needs.

    ``model`` / ``text_model`` default to ``$CLAMP2_MODEL`` / ``$CLAMP2_TEXT_MODEL``, then to what the
    collection recorded at ingest time. Raises :class:`ModelMismatchError` for another model.
    """
    from clamp2_engine.api import CLaMP2

    given = {
        "model": model or os.environ.get("CLAMP2_MODEL"),
        "text_model": text_model or os.environ.get("CLAMP2_TEXT_MODEL"),
        **kwargs,
    }
    opts = with_record(record, given)
    clamp = CLaMP2.from_pretrained(
        opts.pop("model"), opts.pop("text_model"), load_music=load_music, load_text=load_text, **opts
    )
    check_model(record, clamp.identity, name)
    return clamp


def text_search_fn(
    collection: str,
    *,
    modality: str = "abc",
    limit: int = 100,
    store: StoreSpec | None = None,
    model: str | os.PathLike | None = None,
    text_model: str | os.PathLike | None = None,
    query_filter: models.Filter | None = None,
    **model_kwargs: Any,
) -> Callable[[list[str]], list[list[str]]]:
    """``fn(texts) -> [[point id, ...] best first, ...]`` searching ``collection`` by text.

    Opens the store (default: :func:`clamp2_engine.store.resolve_store`) and loads the text tower once.
    The returned function has ``.client`` and ``.model`` attributes; ``fn.close()`` releases the store.
    """
    from clamp2_engine.checkpoints import ModelNotFoundError
    from clamp2_engine.store import client_close, open_client, resolve_store

    _vector_names(modality)
    client = open_client(store or resolve_store())
    try:
        record = read_record(client, collection)
        try:
            clamp = load_query_model(
                record, model=model, text_model=text_model, name=collection, **model_kwargs
            )
        except ModelNotFoundError as exc:
            raise CollectionError(str(exc)) from None
    except BaseException:
        client_close(client)
        raise

    def fn(texts: list[str]) -> list[list[str]]:
        if not texts:
            return []
        vectors = clamp.encode_text(list(texts))
        hits = search_batch(
            client,
            collection,
            vectors,
            modality=modality,
            limit=limit,
            query_filter=query_filter,
            with_payload=False,
        )
        return [[h.id for h in row] for row in hits]

    fn.client, fn.model = client, clamp  # type: ignore[attr-defined]
    fn.close = lambda: client_close(client)  # type: ignore[attr-defined]
    return fn
