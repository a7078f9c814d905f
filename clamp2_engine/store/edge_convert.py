"""Conversions between the store's types and Qdrant Edge's (``qdrant-edge-py``): filters, queries,
search parameters, points, payload index schemas and the vector configuration of a shard."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import qdrant_edge as qe

from clamp2_engine.store.backend import Index, Payload, Scored, Search
from clamp2_engine.store.filters import Filters, translate
from clamp2_engine.store.lexical import LEXICAL, SparseVector
from clamp2_engine.store.quantization import quantization
from clamp2_engine.store.schema import Point


def to_filter(filters: Filters | None, vector: str | None = None) -> Any:
    """``filters`` (and "has vector ``vector``") as a Qdrant Edge filter, or ``None``."""
    return translate(
        filters,
        vector,
        match_any=lambda key, values: qe.FieldCondition(key, match=qe.MatchAny(values)),
        match_words=lambda key, text: qe.FieldCondition(key, match=qe.MatchText(text)),
        has_vector=qe.HasVectorCondition,
        make_filter=qe.Filter,
        is_empty=qe.IsEmptyCondition,
    )


def _query(s: Search) -> Any:
    if s.positives or s.negatives:
        return qe.Query.RecommendBestScore(qe.RecommendQuery(s.positives, s.negatives), using=s.using)
    if s.diversity is not None:
        return qe.Mmr(s.vector, 1.0 - s.diversity, max(s.candidates, s.limit + s.offset), using=s.using)
    return qe.Query.Nearest(to_vector(s.vector), using=s.using)


def to_vector(v: Any) -> Any:
    return qe.SparseVector(list(v.indices), list(v.values)) if isinstance(v, SparseVector) else v


def search_params(s: Search) -> Any:
    """HNSW candidates and, on a quantized collection, rescoring with oversampling; ``None``: defaults."""
    if s.using == LEXICAL or not (s.hnsw_ef or s.oversampling):
        return None
    rescore = (
        qe.QuantizationSearchParams(rescore=True, oversampling=s.oversampling) if s.oversampling else None
    )
    return qe.SearchParams(hnsw_ef=s.hnsw_ef, quantization=rescore)


def request(s: Search, limit: int | None = None, offset: int | None = None) -> Any:
    """``s`` as a query request (``limit`` / ``offset`` given: in their place)."""
    return qe.QueryRequest(
        limit=s.limit if limit is None else limit,
        offset=(s.offset if offset is None else offset) or None,
        query=_query(s),
        filter=to_filter(s.filters),
        with_payload=with_payload(s.with_payload),
        params=search_params(s),
    )


ID_TEXTS = 1 << 16  # point ids kept as text: a search's candidates come back search after search


@lru_cache(maxsize=ID_TEXTS)
def _uuid_text(value: int) -> str:
    return str(uuid.UUID(int=value))


def id_text(pid: Any) -> str:
    """A point id as the store's text (Qdrant Edge gives ``uuid.UUID`` objects; turning one into text
    costs 2 us, and a hybrid search brings back 300 candidates)."""
    return _uuid_text(pid.int) if isinstance(pid, uuid.UUID) else str(pid)


def scored(points: Iterable[Any]) -> list[Scored]:
    """Qdrant Edge's scored points as the store's ``(point id, score, payload)``."""
    return [(id_text(p.id), float(p.score), dict(p.payload or {})) for p in points]


def to_point(record: Any) -> Point:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    return Point(
        id_text(record.id),
        {
            k: SparseVector(tuple(v.indices), tuple(v.values)) if k == LEXICAL else v
            for k, v in vectors.items()
        },
        dict(record.payload or {}),
    )


def edge_point(p: Point) -> Any:
    return qe.Point(uuid.UUID(p.id), point_vectors(p), p.payload)


TEXT_INDEX = dict(tokenizer=qe.TokenizerType.Word, lowercase=True, ascii_folding=True)


def index_schema(kind: str, cold: bool = False) -> Any:
    """A payload index of ``kind``: keyword indexes in RAM (facets and exact filters read them); word
    indexes in RAM too, or (``cold``: a quantized collection) memory-mapped from disk, their pages read
    when a filter needs them."""
    if kind == "keyword":
        return qe.PayloadSchemaType.Keyword
    return (
        qe.TextIndexParams(**TEXT_INDEX, memory=qe.Memory.Cold) if cold else qe.TextIndexParams(**TEXT_INDEX)
    )


def point_vectors(p: Point) -> dict[str, Any]:
    return {**p.vector_lists(), **{k: to_vector(v) for k, v in p.sparse.items()}}


def with_payload(payload: Payload) -> Any:
    return list(payload) if isinstance(payload, list | tuple) else bool(payload)


def ids(values: Sequence[str]) -> list[Any]:
    return [uuid.UUID(i) for i in values]


def _quantization_config(kind: str) -> Any:
    if kind == "int8":
        return qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Pinned)
    if kind == "turbo4":
        return qe.TurboQuantQuantizationConfig(bits=qe.TurboQuantBitSize.Bits4, memory=qe.Memory.Pinned)
    if kind == "binary":
        return qe.BinaryQuantizationConfig(memory=qe.Memory.Pinned)
    return None


def shard_config(dim: int, names: Iterable[str], lexical: bool, kind: str, search_threads: int = 0) -> Any:
    """The configuration of a shard holding dense vectors ``names`` (``dim``-d, cosine) kept as
    quantization ``kind`` says: a compressed copy pinned in RAM and the originals and payloads on disk
    (``Memory.Cold``), or (``none``) everything as Qdrant Edge keeps it by default. ``search_threads``:
    its search pool (0: Qdrant Edge's default, from the CPU count)."""
    q = quantization(kind)
    cold = qe.Memory.Cold if q.compressed else None
    params = {
        v: qe.EdgeVectorParams(
            size=dim,
            distance=qe.Distance.Cosine,
            memory=cold,
            quantization_config=_quantization_config(q.kind),
        )
        for v in names
    }
    sparse = {LEXICAL: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf, memory=cold)} if lexical else None
    return qe.EdgeConfig(
        vectors=params, sparse_vectors=sparse, payload_memory=cold, max_search_threads=search_threads
    )


def index_ops(indexes: Iterable[Index], cold: bool = False) -> list[Any]:
    return [qe.UpdateOperation.create_field_index(key, index_schema(kind, cold)) for key, kind in indexes]
