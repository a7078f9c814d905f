"""A Qdrant server or cluster through qdrant-client; also its in-memory stand-in (``:memory:``) and, for
``migrate --from-local-mode``, folders written by its local mode. The only module importing qdrant_client."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from clamp2_engine.errors import StoreError, StoreInUseError, StoreUnreachableError
from clamp2_engine.store.backend import Backend, Index, Layout, Payload, Scored, Scroll, Search
from clamp2_engine.store.filters import Filters, translate
from clamp2_engine.store.lexical import LEXICAL, SparseVector
from clamp2_engine.store.quantization import quantization
from clamp2_engine.store.schema import META_KEY, RECORD_ID, Point
from clamp2_engine.store.spec import MEMORY, StoreSpec, redact_url
from clamp2_engine.types import VECTORS

PROBE_TIMEOUT_S = 5


def to_filter(filters: Filters | None, vector: str | None = None) -> models.Filter | None:
    """``filters`` (and "has vector ``vector``") as a qdrant-client filter, or ``None``."""
    return translate(
        filters,
        vector,
        match_any=lambda key, values: models.FieldCondition(key=key, match=models.MatchAny(any=values)),
        match_words=lambda key, text: models.FieldCondition(key=key, match=models.MatchText(text=text)),
        has_vector=lambda name: models.HasVectorCondition(has_vector=name),
        make_filter=models.Filter,
        is_empty=lambda key: models.IsEmptyCondition(is_empty=models.PayloadField(key=key)),
    )


def _query(s: Search) -> Any:
    if s.positives or s.negatives:
        return models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=s.positives, negative=s.negatives, strategy=models.RecommendStrategy.BEST_SCORE
            )
        )
    if s.diversity is not None:
        mmr = models.Mmr(diversity=s.diversity, candidates_limit=max(s.candidates, s.limit + s.offset))
        return models.NearestQuery(nearest=s.vector, mmr=mmr)
    return _vector(s.vector)


def _vector(v: Any) -> Any:
    if isinstance(v, SparseVector):
        return models.SparseVector(indices=list(v.indices), values=list(v.values))
    return v


def _point_vectors(p: Point) -> dict[str, Any]:
    return {**p.vector_lists(), **{k: _vector(v) for k, v in p.sparse.items()}}


def _read_vectors(vector: Any) -> dict[str, Any]:
    if not isinstance(vector, dict):
        return {}
    return {
        k: SparseVector(tuple(v.indices), tuple(v.values)) if isinstance(v, models.SparseVector) else v
        for k, v in vector.items()
    }


SPARSE = models.SparseVectorParams(modifier=models.Modifier.IDF)
TEXT_INDEX = models.TextIndexParams(
    type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.WORD, lowercase=True, ascii_folding=True
)


def quantization_config(kind: str) -> Any:
    """The compressed copy kept in RAM for quantization ``kind`` (``None`` for ``none``)."""
    if kind == "int8":
        return models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, quantile=0.99, always_ram=True
            )
        )
    if kind == "turbo4":
        return models.TurboQuantization(
            turbo=models.TurboQuantQuantizationConfig(bits=models.TurboQuantBitSize.BITS4, always_ram=True)
        )
    if kind == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    return None


def _index_schema(kind: str) -> Any:
    return models.PayloadSchemaType.KEYWORD if kind == "keyword" else TEXT_INDEX


def connect(spec: StoreSpec, timeout: int = PROBE_TIMEOUT_S) -> QdrantClient:
    """A client for ``spec``; a server is probed once, so a wrong URL or key fails now, in seconds."""
    if spec.engine == "local-mode":
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*[Ll]ocal mode is not recommended.*")
                return QdrantClient(path=os.fspath(spec.path))
        except RuntimeError as exc:
            if "already accessed" in str(exc):
                raise StoreInUseError(f"{spec.path} is in use by another process") from None
            raise StoreError(f"cannot open {spec.path}: {exc}") from None
    url = spec.url or ""
    if url == MEMORY:
        return QdrantClient(location=MEMORY)
    shown = redact_url(url)
    if (urlsplit(url).scheme if "://" in url else "") not in ("http", "https"):
        raise StoreUnreachableError(
            f"the Qdrant URL {shown!r} is not an http(s) URL (e.g. http://localhost:6333)"
        )
    api_key = os.environ.get(spec.api_key_env) or None
    client = None
    try:
        client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        client.get_collections()
        return client
    except UnexpectedResponse as exc:
        if exc.status_code in (401, 403):
            hint = f"set ${spec.api_key_env}" if api_key is None else f"check ${spec.api_key_env}"
            message = f"Qdrant server {shown} refused access ({exc.status_code}): {hint}"
        else:
            message = (
                f"{shown} does not answer like a Qdrant server (HTTP {exc.status_code} {exc.reason_phrase})"
            )
    except ResponseHandlingException as exc:
        reason = str(exc.source if getattr(exc, "source", None) else exc).strip().splitlines()
        message = f"cannot reach Qdrant server {shown}: {reason[0] if reason else type(exc).__name__}"
    except Exception as exc:  # invalid host names, unknown schemes: httpx / urllib3 errors
        text = str(exc).replace(api_key, "***") if api_key else str(exc)
        message = (
            f"cannot use Qdrant URL {shown}: {type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        )
    if client is not None:
        client.close()
    raise StoreUnreachableError(message)


class ServerBackend(Backend):
    """Collections of a Qdrant server (or of qdrant-client's in-process modes)."""

    engine = "server"

    def __init__(self, spec: StoreSpec):
        super().__init__(spec)
        self.engine = "server" if spec.engine == "server" else "local-mode"
        self.indexed = spec.engine == "server" and spec.url != MEMORY  # in-process modes search exactly
        self.client = connect(spec)

    def names(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def exists(self, name: str) -> bool:
        return self.client.collection_exists(name)

    def create(self, name: str, layout: Layout, meta: dict[str, Any]) -> None:
        q = quantization(layout.quantization)
        params = models.VectorParams(
            size=layout.dim,
            distance=models.Distance.COSINE,
            on_disk=q.compressed or None,
            quantization_config=quantization_config(q.kind),
        )
        self.client.create_collection(
            name,
            vectors_config={v: params for v in VECTORS},
            sparse_vectors_config={LEXICAL: SPARSE} if layout.lexical else None,
            on_disk_payload=q.compressed or None,
            metadata={META_KEY: meta},
        )
        for index in layout.indexes:
            self.set_index(name, index)
        if self.read_meta(name) is None:
            self.write_meta(name, meta)

    def add_lexical(self, name: str) -> None:
        if LEXICAL not in (self.client.get_collection(name).config.params.sparse_vectors or {}):
            config = models.SparseVectorNameConfig(
                sparse=models.SparseVectorConfig(modifier=models.Modifier.IDF)
            )
            self.client.create_vector_name(name, LEXICAL, config)

    def set_index(self, name: str, index: Index) -> None:
        key, kind = index
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Payload indexes have no effect.*")
            if key in (self.client.get_collection(name).payload_schema or {}):
                self.client.delete_payload_index(name, key)
            self.client.create_payload_index(name, key, field_schema=_index_schema(kind))

    def rewrite(self, name: str, points: Sequence[Point]) -> None:
        ops: list[Any] = [
            models.OverwritePayloadOperation(
                overwrite_payload=models.SetPayload(payload=p.payload, points=[p.id])
            )
            for p in points
        ]
        updates = [models.PointVectors(id=p.id, vector=_point_vectors(p)) for p in points if p.vectors]
        if updates:
            ops.append(models.UpdateVectorsOperation(update_vectors=models.UpdateVectors(points=updates)))
        if ops:
            self.client.batch_update_points(name, ops, wait=True)

    def drop(self, name: str) -> None:
        self.client.delete_collection(name)

    def read_meta(self, name: str) -> dict[str, Any] | None:
        meta = (self.client.get_collection(name).config.metadata or {}).get(META_KEY)
        if not isinstance(meta, dict):  # a server without collection metadata: the reserved point
            found = self.client.retrieve(name, [RECORD_ID], with_payload=True)
            meta = (found[0].payload or {}).get(META_KEY) if found else None
        return meta if isinstance(meta, dict) else None

    def write_meta(self, name: str, meta: dict[str, Any]) -> None:
        """In the collection's metadata, or, on a server that keeps none (Qdrant before 1.16), in a
        reserved point without vectors (never a search hit)."""
        self.client.update_collection(name, metadata={META_KEY: meta})
        if not (self.client.get_collection(name).config.metadata or {}).get(META_KEY):
            point = models.PointStruct(id=RECORD_ID, vector={}, payload={META_KEY: meta})
            self.client.upsert(name, points=[point], wait=True)

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        if points:
            structs = [
                models.PointStruct(id=p.id, vector=_point_vectors(p), payload=p.payload) for p in points
            ]
            self.client.upsert(name, points=structs, wait=True)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self.client.delete(name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def count(self, name: str, filters: Filters | None = None, vector: str | None = None) -> int:
        n = self.client.count(name, count_filter=to_filter(filters, vector), exact=True).count
        if n and not filters and not vector and self.client.retrieve(name, [RECORD_ID], with_payload=False):
            n -= 1  # the reserved record point
        return n

    def scroll_page(self, name: str, request: Scroll, offset: Any) -> tuple[list[Point], Any]:
        records, offset = self.client.scroll(
            name,
            scroll_filter=to_filter(request.filters),
            limit=request.page,
            offset=offset,
            with_payload=request.payload,
            with_vectors=request.vectors,
        )
        points = [
            Point(str(r.id), _read_vectors(r.vector), dict(r.payload or {}))
            for r in records
            if str(r.id) != RECORD_ID
        ]
        return points, offset

    def retrieve(
        self, name: str, ids: Sequence[str], payload: Payload = True, vectors: bool = False
    ) -> list[Point]:
        found = self.client.retrieve(name, list(ids), with_payload=payload, with_vectors=vectors)
        return [Point(str(r.id), _read_vectors(r.vector), dict(r.payload or {})) for r in found]

    def query(self, name: str, searches: Sequence[Search]) -> list[list[Scored]]:
        requests = [
            models.QueryRequest(
                query=_query(s),
                using=s.using,
                filter=to_filter(s.filters),
                limit=s.limit,
                offset=s.offset or None,
                with_payload=s.with_payload,
                params=self._params(s),
            )
            for s in searches
        ]
        responses = self.client.query_batch_points(name, requests=requests) if requests else []
        return [[(str(p.id), float(p.score), dict(p.payload or {})) for p in r.points] for r in responses]

    def _params(self, s: Search) -> models.SearchParams | None:
        if not self.indexed or s.using == LEXICAL or not (s.hnsw_ef or s.oversampling):
            return None
        rescore = models.QuantizationSearchParams(rescore=True, oversampling=s.oversampling)
        return models.SearchParams(hnsw_ef=s.hnsw_ef, quantization=rescore if s.oversampling else None)

    def set_quantization(self, name: str, kind: str) -> None:
        """Keep the vectors of ``name`` as ``kind`` says: the server builds the compressed copies and moves
        the originals (in the background), nothing is embedded again."""
        q = quantization(kind)
        diff = models.VectorParamsDiff(on_disk=q.compressed)
        self.client.update_collection(
            name,
            vectors_config={v: diff for v in VECTORS},
            quantization_config=quantization_config(q.kind) or models.Disabled.DISABLED,
        )

    def facet(self, name: str, key: str, limit: int = 1000) -> list[tuple[str, int]]:
        try:
            hits = self.client.facet(name, key, limit=limit, exact=True).hits
        except (UnexpectedResponse, ValueError):  # no index on the field
            return []
        return [(str(h.value), int(h.count)) for h in hits]

    def info(self, name: str) -> dict[str, Any]:
        info = self.client.get_collection(name)
        return {
            "engine": self.engine,
            "status": str(getattr(info.status, "value", info.status)),
            "segments": info.segments_count,
            "indexed_vectors": info.indexed_vectors_count,
            "payload_indexes": sorted((info.payload_schema or {}).keys()),
        }

    def optimize(self, name: str) -> bool:
        return False  # a server optimizes by itself, in the background

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # pragma: no cover - closing is best effort
            pass
