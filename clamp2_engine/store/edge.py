"""The embedded engine: Qdrant Edge (``qdrant-edge-py``), Qdrant's Rust engine in this process.

The only module that imports ``qdrant_edge`` (a beta API: a change of it touches this file alone).
Layout: ``<root>/<collection>/shard/`` (segments, WAL, indexes) and ``<root>/<collection>/collection.json``
(the model record, written last: a folder without it is a creation that did not finish). A shard is
opened on first use and held, with its lock, until :meth:`EdgeBackend.close`; the lock is the kernel's,
so a killed process leaves none behind.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from clamp2_engine.errors import CollectionNotFoundError, StoreError, StoreInUseError
from clamp2_engine.store.backend import Backend, Index, Payload, Scored, Scroll, Search
from clamp2_engine.store.filters import Filters, translate
from clamp2_engine.store.lexical import LEXICAL, SparseVector
from clamp2_engine.store.schema import Point
from clamp2_engine.store.spec import StoreSpec, is_local_mode_folder
from clamp2_engine.types import VECTORS

RECORD_FILE = "collection.json"
SHARD_DIR = "shard"


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
    return qe.Query.Nearest(_vector(s.vector), using=s.using)


def _vector(v: Any) -> Any:
    return qe.SparseVector(list(v.indices), list(v.values)) if isinstance(v, SparseVector) else v


def _params(s: Search) -> Any:
    return qe.SearchParams(hnsw_ef=s.hnsw_ef) if s.hnsw_ef else None


def _request(s: Search) -> Any:
    return qe.QueryRequest(
        limit=s.limit,
        offset=s.offset or None,
        query=_query(s),
        filter=to_filter(s.filters),
        with_payload=_with(s.with_payload),
        params=_params(s),
    )


def _point(record: Any) -> Point:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    return Point(
        str(record.id),
        {
            k: SparseVector(tuple(v.indices), tuple(v.values)) if k == LEXICAL else v
            for k, v in vectors.items()
        },
        dict(record.payload or {}),
    )


TEXT_INDEX = dict(tokenizer=qe.TokenizerType.Word, lowercase=True, ascii_folding=True)


def _index_schema(kind: str) -> Any:
    return qe.PayloadSchemaType.Keyword if kind == "keyword" else qe.TextIndexParams(**TEXT_INDEX)


def _point_vectors(p: Point) -> dict[str, Any]:
    return {**p.vector_lists(), **{k: _vector(v) for k, v in p.sparse.items()}}


def _with(payload: Payload) -> Any:
    return list(payload) if isinstance(payload, list | tuple) else bool(payload)


def _ids(ids: Sequence[str]) -> list[Any]:
    return [uuid.UUID(i) for i in ids]


class EdgeBackend(Backend):
    """Collections as Qdrant Edge shards under one folder."""

    engine = "edge"

    def __init__(self, spec: StoreSpec):
        super().__init__(spec)
        assert spec.path is not None
        self.root = spec.path
        if is_local_mode_folder(self.root):
            raise StoreError(
                f"{self.root} holds collections of an older clamp2-engine (qdrant-client local mode): copy them "
                f"into Qdrant Edge with `clamp2-engine migrate -c NAME --from-local-mode {self.root} "
                "--to-path NEW_DIR`"
            )
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the embedded store folder {self.root}: {exc.strerror or exc}"
            ) from None
        self.shards: dict[str, Any] = {}

    # --- collections ---------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{name!r} is no collection name")
        return self.root / name

    def names(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob(f"*/{RECORD_FILE}"))

    def exists(self, name: str) -> bool:
        return (self._dir(name) / RECORD_FILE).is_file()

    def shard(self, name: str) -> Any:
        """The open shard of ``name`` (opened, and locked, on first use)."""
        if name not in self.shards:
            if not self.exists(name):
                raise CollectionNotFoundError(f"no collection {name!r}")
            self.shards[name] = self._open(self._dir(name) / SHARD_DIR, qe.EdgeShard.load)
        return self.shards[name]

    def _open(self, path: Path, opener: Any, *args: Any) -> Any:
        try:
            return opener(os.fspath(path), *args)
        except Exception as exc:  # qdrant_edge raises plain Exception; its text says why
            if "WouldBlock" in str(exc):
                raise StoreInUseError(
                    f"collection {path.parent.name!r} in {self.root} is in use by another process (an ingest, "
                    "search, shell or serve still running?). Wait for it to finish, or serve the collections "
                    "from a Qdrant server for concurrent access."
                ) from None
            raise StoreError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None

    def create(
        self, name: str, dim: int, meta: dict[str, Any], indexes: Sequence[Index], lexical: bool = True
    ) -> None:
        folder = self._dir(name)
        if folder.exists():  # a creation that did not finish (no record): start it again, if it is ours
            if not set(os.listdir(folder)) <= {SHARD_DIR, RECORD_FILE + ".tmp"}:
                raise StoreError(
                    f"{folder} exists and is not a clamp2-engine collection: choose another name"
                )
            shutil.rmtree(folder)
        params = {v: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine) for v in VECTORS}
        sparse = {LEXICAL: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if lexical else None
        config = qe.EdgeConfig(vectors=params, sparse_vectors=sparse)
        shard = self._open(folder / SHARD_DIR, qe.EdgeShard.create, config)
        for key, kind in indexes:
            shard.update(qe.UpdateOperation.create_field_index(key, _index_schema(kind)))
        self.shards[name] = shard
        self.write_meta(name, meta)

    def add_lexical(self, name: str) -> None:
        try:
            self.shard(name).update(qe.UpdateOperation.create_sparse_vector(LEXICAL, qe.Modifier.Idf))
        except Exception as exc:  # qdrant_edge raises plain Exception; an existing vector is fine
            if "exist" not in str(exc).lower():
                raise StoreError(
                    f"cannot add the lexical vector to {name!r}: {str(exc).splitlines()[0]}"
                ) from None

    def set_index(self, name: str, index: Index) -> None:
        key, kind = index
        shard = self.shard(name)
        if key in shard.info().payload_schema:
            shard.update(qe.UpdateOperation.delete_field_index(key))
        shard.update(qe.UpdateOperation.create_field_index(key, _index_schema(kind)))

    def rewrite(self, name: str, points: Sequence[Point]) -> None:
        shard = self.shard(name)
        for p in points:
            shard.update(qe.UpdateOperation.overwrite_payload([uuid.UUID(p.id)], p.payload))
        updates = [qe.PointVectors(uuid.UUID(p.id), _point_vectors(p)) for p in points if p.vectors]
        if updates:
            shard.update(qe.UpdateOperation.update_vectors(updates))

    def drop(self, name: str) -> None:
        self.shard(name)  # holding its lock: never delete what another process has open
        self.shards.pop(name).close()
        (self._dir(name) / RECORD_FILE).unlink()
        shutil.rmtree(self._dir(name))

    def read_meta(self, name: str) -> dict[str, Any] | None:
        try:
            meta = json.loads((self._dir(name) / RECORD_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CollectionNotFoundError(f"no collection {name!r}") from None
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def write_meta(self, name: str, meta: dict[str, Any]) -> None:
        path = self._dir(name) / RECORD_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    # --- points --------------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        if points:
            batch = [qe.Point(uuid.UUID(p.id), _point_vectors(p), p.payload) for p in points]
            self.shard(name).update(qe.UpdateOperation.upsert_points(batch))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self.shard(name).update(qe.UpdateOperation.delete_points(_ids(ids)))

    def count(self, name: str, filters: Filters | None = None, vector: str | None = None) -> int:
        return self.shard(name).count(qe.CountRequest(exact=True, filter=to_filter(filters, vector)))

    def scroll_page(self, name: str, request: Scroll, offset: Any) -> tuple[list[Point], Any]:
        records, offset = self.shard(name).scroll(
            qe.ScrollRequest(
                offset=offset,
                limit=request.page,
                filter=to_filter(request.filters),
                with_payload=_with(request.payload),
                with_vector=request.vectors,
            )
        )
        return [_point(r) for r in records], offset

    def retrieve(
        self, name: str, ids: Sequence[str], payload: Payload = True, vectors: bool = False
    ) -> list[Point]:
        found = self.shard(name).retrieve(_ids(ids), with_payload=_with(payload), with_vector=vectors)
        return [_point(r) for r in found]

    def query(self, name: str, searches: Sequence[Search]) -> list[list[Scored]]:
        requests = [_request(s) for s in searches]
        if not requests:
            return []
        shard = self.shard(name)
        results = (
            [shard.query(requests[0])]
            if len(requests) == 1
            else shard.query_batch(qe.QueryBatchRequest(requests))
        )
        return [[(str(p.id), float(p.score), dict(p.payload or {})) for p in points] for points in results]

    def facet(self, name: str, key: str, limit: int = 1000) -> list[tuple[str, int]]:
        try:
            response = self.shard(name).facet(qe.FacetRequest(key, limit=limit, exact=True))
        except Exception as exc:  # no keyword index on the field (a collection made before it had one)
            if isinstance(exc, StoreError):
                raise
            return []
        return [(str(getattr(h.value, "value", h.value)), int(h.count)) for h in response.hits]

    def info(self, name: str) -> dict[str, Any]:
        info = self.shard(name).info()
        folder = self._dir(name)
        disk = sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file())  # sparse WAL files
        return {
            "engine": self.engine,
            "path": os.fspath(folder),
            "segments": info.segments_count,
            "indexed_vectors": info.indexed_vectors_count,
            "payload_indexes": sorted(info.payload_schema),
            "disk_bytes": disk,
        }

    def optimize(self, name: str) -> bool:
        shard = self.shard(name)
        changed = shard.optimize()
        shard.flush()
        return bool(changed)

    def hold(self, name: str) -> None:
        self.shard(name)

    def holds(self, name: str) -> bool:
        return name in self.shards

    def release(self, name: str) -> None:
        shard = self.shards.pop(name, None)
        if shard is not None:
            shard.close()

    def close(self) -> None:
        for name in list(self.shards):
            try:
                self.release(name)
            except Exception:  # pragma: no cover - closing is best effort
                pass
