"""The embedded engine: Qdrant Edge (``qdrant-edge-py``), Qdrant's Rust engine in this process.

The only module that imports ``qdrant_edge`` (a beta API: a change of it touches this file alone).
Layout: ``<root>/<collection>/shard/`` (segments, WAL, indexes), ``<root>/<collection>/collection.json``
(the record, with a copy in ``collection.json.bak``) and, while a creation runs, ``creating`` (a marker:
a folder with it is a creation that did not finish; a folder whose record is lost is never taken for
one). Creations hold the store folder's lock. A shard is opened on first use (in a child process first
when its files changed since this engine closed them: see :mod:`.edge_files`) and held, with its lock,
until :meth:`EdgeBackend.close`; the lock is the kernel's, so a killed process leaves none behind.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from clamp2_engine.errors import (
    CollectionDamagedError,
    CollectionExistsError,
    CollectionNotFoundError,
    DiskFullError,
    StoreError,
    StoreInUseError,
)
from clamp2_engine.store import edge_files, edge_record
from clamp2_engine.store.backend import Backend, Index, Payload, Scored, Scroll, Search
from clamp2_engine.store.filters import Filters, translate
from clamp2_engine.store.lexical import LEXICAL, SparseVector
from clamp2_engine.store.schema import Point
from clamp2_engine.store.spec import StoreSpec, is_local_mode_folder
from clamp2_engine.types import VECTORS

RECORD_FILE, BACKUP_FILE = edge_record.RECORD_FILE, edge_record.BACKUP_FILE
CREATING = "creating"  # a creation's own marker, removed when the record is written
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


def now_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S")


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
        self.set_aside: dict[str, list[str]] = {}  # segments moved aside when a collection was opened

    # --- collections ---------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{name!r} is no collection name")
        return self.root / name

    def names(self) -> list[str]:
        """Collections: folders with a record, and those whose record is lost (a shard, no creation marker)."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self._is_collection(p))

    @staticmethod
    def _is_collection(folder: Path) -> bool:
        if (folder / RECORD_FILE).is_file():
            return True
        return (folder / SHARD_DIR).is_dir() and not (folder / CREATING).exists()

    def exists(self, name: str) -> bool:
        return self._is_collection(self._dir(name))

    def shard(self, name: str) -> Any:
        """The open shard of ``name`` (opened, and locked, on first use). Segments Qdrant Edge would delete
        are set aside first, and a shard whose files changed since this engine closed them is opened in a
        child process first (damaged files must abort that child, not this process)."""
        if name not in self.shards:
            if not self.exists(name):
                raise CollectionNotFoundError(f"no collection {name!r}")
            path = self._dir(name) / SHARD_DIR
            edge_files.need_space(self.root, edge_files.OPEN_NEED, f"opening collection {name!r}")
            with edge_files.shard_lock(path, name):
                self.set_aside[name] = edge_files.set_aside_unfinished(path)
            edge_files.trial_open(path, name)
            self.shards[name] = self._open(path, qe.EdgeShard.load)
            edge_files.forget_closed(path)
        return self.shards[name]

    def _call(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on collection ``name``'s storage, its exceptions as typed one-line errors."""
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:  # qdrant_edge raises plain Exception; its text says why
            raise self.storage_error(name, exc) from None

    def storage_error(self, name: str, exc: BaseException) -> StoreError:
        if edge_files.is_disk_full(exc):
            return DiskFullError(f"the disk of {self.root} is full: free some space and run it again")
        text = " ".join(str(exc).split())
        for prefix in ("Service internal error: ", "Service runtime error: "):
            text = text.removeprefix(prefix)
        text = text[:200]
        return CollectionDamagedError(
            f"collection {name!r} could not be read: {text} (the storage may be damaged: see "
            f"`clamp2-engine collections verify {name}`)"
        )

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
        with edge_files.creation_lock(self.root):  # one creator at a time; the second finds the first's
            if (folder / RECORD_FILE).is_file():
                raise CollectionExistsError(f"collection {name!r} exists")
            if folder.exists():
                self._clear_unfinished(name, folder)
            edge_files.need_space(self.root, edge_files.CREATE_NEED, f"collection {name!r}")
            folder.mkdir()
            (folder / CREATING).touch()
            params = {v: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine) for v in VECTORS}
            sparse = {LEXICAL: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if lexical else None
            config = qe.EdgeConfig(vectors=params, sparse_vectors=sparse)
            shard = self._open(folder / SHARD_DIR, qe.EdgeShard.create, config)
            self.shards[name] = shard
            for key, kind in indexes:
                self._call(
                    name, shard.update, qe.UpdateOperation.create_field_index(key, _index_schema(kind))
                )
            self.write_meta(name, meta)
            (folder / CREATING).unlink()

    def _clear_unfinished(self, name: str, folder: Path) -> None:
        """Remove what a creation that did not finish left (its marker says so, or it holds nothing);
        a collection whose record is lost, or a folder that is not ours, is never removed."""
        content = set(os.listdir(folder))
        ours = {SHARD_DIR, CREATING, BACKUP_FILE, edge_files.STAMP_FILE, edge_files.QUARANTINE_DIR}
        ours |= {f + ".tmp" for f in (RECORD_FILE, BACKUP_FILE)} | {"closed-clean.tmp"}
        if not content <= ours:
            raise StoreError(f"{folder} exists and is not a clamp2-engine collection: choose another name")
        if SHARD_DIR in content and CREATING not in content and BACKUP_FILE in content:
            raise edge_record.record_lost(name)
        if SHARD_DIR in content and CREATING not in content:  # an older engine's creation, or a lost record
            if self.count(name):
                raise edge_record.record_lost(name)
            self.release(name)
        with edge_files.shard_lock(folder / SHARD_DIR, name):
            shutil.rmtree(folder)

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
        if key in self._call(name, shard.info).payload_schema:
            self._call(name, shard.update, qe.UpdateOperation.delete_field_index(key))
        self._call(name, shard.update, qe.UpdateOperation.create_field_index(key, _index_schema(kind)))

    def rewrite(self, name: str, points: Sequence[Point]) -> None:
        shard = self.shard(name)
        self._need_space(points)
        for p in points:
            self._call(name, shard.update, qe.UpdateOperation.overwrite_payload([uuid.UUID(p.id)], p.payload))
        updates = [qe.PointVectors(uuid.UUID(p.id), _point_vectors(p)) for p in points if p.vectors]
        if updates:
            self._call(name, shard.update, qe.UpdateOperation.update_vectors(updates))

    def _need_space(self, points: Sequence[Point]) -> None:
        """Refuse a write the disk cannot take (see :func:`edge_files.need_space`)."""
        dense = sum(len(v) for p in points for v in p.vector_lists().values()) * 4
        payload = sum(len(json.dumps(p.payload, default=str)) for p in points)
        edge_files.need_space(self.root, edge_files.WRITE_MARGIN + 2 * (dense + payload), "this write")

    def drop(self, name: str) -> None:
        """Delete collection ``name``, also one that cannot be opened, never one another process holds."""
        folder = self._dir(name)
        shard = self.shards.pop(name, None)
        if shard is not None:
            shard.close()
        with edge_files.shard_lock(folder / SHARD_DIR, name):
            (folder / RECORD_FILE).unlink(missing_ok=True)
            shutil.rmtree(folder)

    def replace_with(self, name: str, spare: str) -> None:
        """Put collection ``spare`` in the place of ``name``, whose folder is set aside in
        ``<root>/.set-aside/`` (kept for inspection; remove it when satisfied)."""
        for n in (name, spare):
            self.release(n)
        aside = self.root / ".set-aside" / f"{name}-{now_stamp()}"
        aside.parent.mkdir(exist_ok=True)
        with edge_files.shard_lock(self._dir(name) / SHARD_DIR, name):
            os.replace(self._dir(name), aside)
        os.replace(self._dir(spare), self._dir(name))

    def read_meta(self, name: str) -> dict[str, Any] | None:
        folder = self._dir(name)
        return edge_record.read_record(folder, name, (folder / SHARD_DIR).is_dir())

    def read_backup(self, name: str) -> dict[str, Any] | None:
        """The record's copy (written beside it at every write), or ``None``."""
        return edge_record.read_backup(self._dir(name))

    def write_meta(self, name: str, meta: dict[str, Any]) -> None:
        edge_record.write_record(self._dir(name), name, meta)

    # --- points --------------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        if points:
            shard = self.shard(name)
            self._need_space(points)
            batch = [qe.Point(uuid.UUID(p.id), _point_vectors(p), p.payload) for p in points]
            self._call(name, shard.update, qe.UpdateOperation.upsert_points(batch))

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            shard = self.shard(name)
            self._call(name, shard.update, qe.UpdateOperation.delete_points(_ids(ids)))

    def count(self, name: str, filters: Filters | None = None, vector: str | None = None) -> int:
        shard = self.shard(name)
        return self._call(name, shard.count, qe.CountRequest(exact=True, filter=to_filter(filters, vector)))

    def scroll_page(self, name: str, request: Scroll, offset: Any) -> tuple[list[Point], Any]:
        shard = self.shard(name)
        records, offset = self._call(
            name,
            shard.scroll,
            qe.ScrollRequest(
                offset=offset,
                limit=request.page,
                filter=to_filter(request.filters),
                with_payload=_with(request.payload),
                with_vector=request.vectors,
            ),
        )
        return [_point(r) for r in records], offset

    def retrieve(
        self, name: str, ids: Sequence[str], payload: Payload = True, vectors: bool = False
    ) -> list[Point]:
        shard = self.shard(name)
        found = self._call(name, shard.retrieve, _ids(ids), with_payload=_with(payload), with_vector=vectors)
        return [_point(r) for r in found]

    def query(self, name: str, searches: Sequence[Search]) -> list[list[Scored]]:
        requests = [_request(s) for s in searches]
        if not requests:
            return []
        shard = self.shard(name)
        results = (
            [self._call(name, shard.query, requests[0])]
            if len(requests) == 1
            else self._call(name, shard.query_batch, qe.QueryBatchRequest(requests))
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
        shard = self.shard(name)
        info = self._call(name, shard.info)
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
        edge_files.need_space(self.root, edge_files.WRITE_MARGIN, f"optimizing {name!r}")
        changed = self._call(name, shard.optimize)
        self._call(name, shard.flush)
        return bool(changed)

    def hold(self, name: str) -> None:
        self.shard(name)

    def holds(self, name: str) -> bool:
        return name in self.shards

    def release(self, name: str) -> None:
        shard = self.shards.pop(name, None)
        if shard is not None:
            shard.close()
            edge_files.mark_closed(self._dir(name) / SHARD_DIR)

    def close(self) -> None:
        for name in list(self.shards):
            try:
                self.release(name)
            except Exception:  # pragma: no cover - closing is best effort
                pass
