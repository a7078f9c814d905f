"""The embedded engine: Qdrant Edge (``qdrant-edge-py``), Qdrant's Rust engine in this process.

The only modules that import ``qdrant_edge`` are this one, :mod:`.edge_shards` and :mod:`.edge_convert`
(a beta API: a change of it touches these alone). Layout of a collection folder ``<root>/<collection>/``:
``shards/<group>/`` one shard (segments, WAL, indexes) per vector group (:mod:`.edge_shards`),
``layout.json`` their configuration, ``lock`` (held while a process has the collection open),
``collection.json`` (the record, with a copy in ``collection.json.bak``) and, while a creation runs,
``creating`` (a marker: a folder with it is a creation that did not finish; a folder whose record is lost
is never taken for one). A collection made before vector groups has one ``shard/`` instead of
``shards/`` and ``layout.json``. Creations hold the store folder's lock. A shard is opened on first use (in
a child process first when its files changed since this engine closed them: see :mod:`.edge_files`) and
held, with its lock, until :meth:`EdgeBackend.close`; the locks are the kernel's, so a killed process
leaves none behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
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
from clamp2_engine.store import edge_convert as cv
from clamp2_engine.store import edge_files, edge_record
from clamp2_engine.store.backend import Backend, Index, Layout, Payload, Scored, Scroll, Search
from clamp2_engine.store.edge_shards import (
    GROUPS_DIR,
    LAYOUT_FILE,
    LEGACY_DIR,
    LOCK_FILE,
    GroupLayout,
    ShardSet,
    group_dirs,
    group_names,
)
from clamp2_engine.store.filters import Filters
from clamp2_engine.store.lexical import LEXICAL
from clamp2_engine.store.quantization import quantization
from clamp2_engine.store.schema import Point
from clamp2_engine.store.spec import StoreSpec, is_local_mode_folder

RECORD_FILE, BACKUP_FILE = edge_record.RECORD_FILE, edge_record.BACKUP_FILE
CREATING = "creating"  # a creation's own marker, removed when the record is written
SHARD_DIR = LEGACY_DIR
to_filter = cv.to_filter


def now_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S")


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
        self.sets: dict[str, ShardSet] = {}
        self.locks: dict[str, int] = {}  # the lock file of each open collection with vector groups
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
        has_storage = (folder / SHARD_DIR).is_dir() or (folder / LAYOUT_FILE).is_file()
        return has_storage and not (folder / CREATING).exists()

    def exists(self, name: str) -> bool:
        return self._is_collection(self._dir(name))

    def shards(self, name: str) -> ShardSet:
        """The open shards of ``name`` (opened, and locked, on first use). Segments Qdrant Edge would delete
        are set aside first, and a shard whose files changed since this engine closed them is opened in a
        child process first (damaged files must abort that child, not this process)."""
        if name not in self.sets:
            if not self.exists(name):
                raise CollectionNotFoundError(f"no collection {name!r}")
            self._open_set(name)
        return self.sets[name]

    def _open_set(self, name: str) -> None:
        """Open (and lock) every shard of ``name``."""
        folder = self._dir(name)
        edge_files.need_space(self.root, edge_files.OPEN_NEED, f"opening collection {name!r}")
        layout = GroupLayout.read(folder)
        if layout is not None:
            self.locks[name] = self._lock(folder, name)
        opened: dict[str, Any] = {}
        try:
            aside: list[str] = []
            for key, path in group_dirs(folder).items():
                with edge_files.shard_lock(path, name):
                    aside += edge_files.set_aside_unfinished(path)
                edge_files.trial_open(path, name)
                opened[key] = self._load(path, layout, key)
                edge_files.forget_closed(path)
        except BaseException:
            for shard in opened.values():
                shard.close()
            self._unlock(name)
            raise
        self.set_aside[name] = aside
        add = None if layout is None else (lambda key, n=name, lay=layout: self._add_group(n, lay, key))
        cold = layout is not None and quantization(layout.quantization).compressed
        self.sets[name] = ShardSet(opened, lambda fn, *a, n=name, **k: self._call(n, fn, *a, **k), add, cold)

    def _lock(self, folder: Path, name: str) -> int:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._in_use(name) from None
        return fd

    def _unlock(self, name: str) -> None:
        fd = self.locks.pop(name, None)
        if fd is not None:
            os.close(fd)  # releases the lock

    def _in_use(self, name: str) -> StoreInUseError:
        return StoreInUseError(
            f"collection {name!r} in {self.root} is in use by another process (an ingest, search, shell or "
            "serve still running?). Wait for it to finish, or serve the collections from a Qdrant server "
            "for concurrent access."
        )

    @contextlib.contextmanager
    def _held(self, name: str) -> Iterator[None]:
        """Hold collection ``name``'s locks without opening it; :class:`StoreInUseError` when another
        process has it open."""
        folder = self._dir(name)
        if (folder / LAYOUT_FILE).is_file() and name not in self.locks:
            fd = self._lock(folder, name)
            try:
                yield
            finally:
                os.close(fd)
            return
        with edge_files.shard_lock(folder / SHARD_DIR, name):
            yield

    def _add_group(self, name: str, layout: GroupLayout, key: str) -> Any:
        """Make the shard of vector group ``key``: built aside, with its payload indexes, then put in
        place (a creation that stops half-way leaves no shard without its indexes)."""
        groups = self._dir(name) / GROUPS_DIR
        final, tmp = groups / key, groups / f".{key}.new"
        edge_files.need_space(self.root, edge_files.CREATE_NEED, f"collection {name!r}")
        if tmp.exists():
            shutil.rmtree(tmp)
        shard = self._open(tmp, qe.EdgeShard.create, self._config(layout, key))
        try:
            for op in cv.index_ops(layout.indexes, cold=quantization(layout.quantization).compressed):
                self._call(name, shard.update, op)
        finally:
            shard.close()
        os.replace(tmp, final)
        return self._load(final, layout, key)

    def _config(self, layout: GroupLayout, key: str) -> Any:
        """The configuration group ``key``'s shard was made with, and this store's search threads."""
        names = sorted(group_names(key))
        return cv.shard_config(
            layout.dim, names, layout.lexical, layout.quantization, self.spec.search_threads
        )

    def _load(self, path: Path, layout: GroupLayout | None, key: str) -> Any:
        """Open a shard; one of vector group ``key`` with its configuration given again, which sets its
        search threads (Qdrant Edge checks it against the shard's own and writes it back). A collection
        made before vector groups keeps Qdrant Edge's default."""
        if layout is None:
            return self._open(path, qe.EdgeShard.load)
        return self._open(path, qe.EdgeShard.load, self._config(layout, key))

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
                raise self._in_use(self._name_of(path)) from None
            raise StoreError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None

    def _name_of(self, shard: Path) -> str:
        return (shard.parent if shard.name == SHARD_DIR else shard.parent.parent).name

    def create(self, name: str, layout: Layout, meta: dict[str, Any]) -> None:
        folder = self._dir(name)
        with edge_files.creation_lock(self.root):  # one creator at a time; the second finds the first's
            if (folder / RECORD_FILE).is_file():
                raise CollectionExistsError(f"collection {name!r} exists")
            if folder.exists():
                self._clear_unfinished(name, folder)
            edge_files.need_space(self.root, edge_files.CREATE_NEED, f"collection {name!r}")
            folder.mkdir()
            (folder / CREATING).touch()
            (folder / GROUPS_DIR).mkdir()
            GroupLayout(layout.dim, layout.lexical, layout.quantization, list(layout.indexes)).write(folder)
            self._open_set(name)
            self.write_meta(name, meta)
            (folder / CREATING).unlink()

    def _clear_unfinished(self, name: str, folder: Path) -> None:
        """Remove what a creation that did not finish left (its marker says so, or it holds nothing);
        a collection whose record is lost, or a folder that is not ours, is never removed."""
        content = set(os.listdir(folder))
        ours = {SHARD_DIR, GROUPS_DIR, LAYOUT_FILE, LAYOUT_FILE + ".tmp", LOCK_FILE, CREATING, BACKUP_FILE}
        ours |= {edge_files.STAMP_FILE, edge_files.QUARANTINE_DIR, "closed-clean.tmp"}
        ours |= {f + ".tmp" for f in (RECORD_FILE, BACKUP_FILE)}
        if not content <= ours:
            raise StoreError(f"{folder} exists and is not a clamp2-engine collection: choose another name")
        storage = bool(content & {SHARD_DIR, LAYOUT_FILE})
        if storage and CREATING not in content and BACKUP_FILE in content:
            raise edge_record.record_lost(name)
        if storage and CREATING not in content:  # an older engine's creation, or a lost record
            if self.count(name):
                raise edge_record.record_lost(name)
            self.release(name)
        with self._held(name):
            shutil.rmtree(folder)

    def add_lexical(self, name: str) -> None:
        for shard in self.shards(name).shards.values():
            try:
                shard.update(qe.UpdateOperation.create_sparse_vector(LEXICAL, qe.Modifier.Idf))
            except Exception as exc:  # qdrant_edge raises plain Exception; an existing vector is fine
                if "exist" not in str(exc).lower():
                    raise StoreError(
                        f"cannot add the lexical vector to {name!r}: {str(exc).splitlines()[0]}"
                    ) from None
        self._update_layout(name, lexical=True)

    def _update_layout(self, name: str, lexical: bool | None = None, index: Index | None = None) -> None:
        folder = self._dir(name)
        layout = GroupLayout.read(folder)
        if layout is None:
            return
        if lexical is not None:
            layout.lexical = lexical
        if index is not None:
            layout.indexes = [i for i in layout.indexes if i[0] != index[0]] + [index]
        layout.write(folder)
        if self.sets[name].add is not None:
            self.sets[name].add = lambda key, n=name, lay=layout: self._add_group(n, lay, key)

    def set_index(self, name: str, index: Index) -> None:
        self.shards(name).set_index(index)
        self._update_layout(name, index=index)

    def rewrite(self, name: str, points: Sequence[Point]) -> None:
        self._need_space(points)
        self.shards(name).rewrite(points)

    def _need_space(self, points: Sequence[Point]) -> None:
        """Refuse a write the disk cannot take (see :func:`edge_files.need_space`)."""
        dense = sum(len(v) for p in points for v in p.vector_lists().values()) * 4
        payload = sum(len(json.dumps(p.payload, default=str)) for p in points)
        edge_files.need_space(self.root, edge_files.WRITE_MARGIN + 2 * (dense + payload), "this write")

    def drop(self, name: str) -> None:
        """Delete collection ``name``, also one that cannot be opened, never one another process holds."""
        folder = self._dir(name)
        self.release(name)
        with self._held(name):
            (folder / RECORD_FILE).unlink(missing_ok=True)
            shutil.rmtree(folder)

    def replace_with(self, name: str, spare: str) -> None:
        """Put collection ``spare`` in the place of ``name``, whose folder is set aside in
        ``<root>/.set-aside/`` (kept for inspection; remove it when satisfied)."""
        for n in (name, spare):
            self.release(n)
        aside = self.root / ".set-aside" / f"{name}-{now_stamp()}"
        aside.parent.mkdir(exist_ok=True)
        with self._held(name):
            os.replace(self._dir(name), aside)
        os.replace(self._dir(spare), self._dir(name))

    def read_meta(self, name: str) -> dict[str, Any] | None:
        folder = self._dir(name)
        has_storage = (folder / SHARD_DIR).is_dir() or (folder / LAYOUT_FILE).is_file()
        return edge_record.read_record(folder, name, has_storage)

    def read_backup(self, name: str) -> dict[str, Any] | None:
        """The record's copy (written beside it at every write), or ``None``."""
        return edge_record.read_backup(self._dir(name))

    def write_meta(self, name: str, meta: dict[str, Any]) -> None:
        edge_record.write_record(self._dir(name), name, meta)

    # --- points --------------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        if points:
            shards = self.shards(name)
            self._need_space(points)
            shards.upsert(points)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self.shards(name).delete(ids)

    def count(self, name: str, filters: Filters | None = None, vector: str | None = None) -> int:
        return self.shards(name).count(filters, vector)

    def scroll_page(self, name: str, request: Scroll, offset: Any) -> tuple[list[Point], Any]:
        records, offset = self.shards(name).scroll_page(request, offset)
        return [cv.to_point(r) for r in records], offset

    def retrieve(
        self, name: str, ids: Sequence[str], payload: Payload = True, vectors: bool = False
    ) -> list[Point]:
        return self.shards(name).retrieve(ids, payload, vectors)

    def query(self, name: str, searches: Sequence[Search]) -> list[list[Scored]]:
        return self.shards(name).query(searches) if searches else []

    def facet(self, name: str, key: str, limit: int = 1000) -> list[tuple[str, int]]:
        return self.shards(name).facet(key, limit)

    def info(self, name: str) -> dict[str, Any]:
        info = self.shards(name).info()
        folder = self._dir(name)
        disk = sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file())  # sparse WAL files
        return {"engine": self.engine, "path": os.fspath(folder), **info, "disk_bytes": disk}

    def optimize(self, name: str) -> bool:
        shards = self.shards(name)
        edge_files.need_space(self.root, edge_files.WRITE_MARGIN, f"optimizing {name!r}")
        return shards.optimize()

    def hold(self, name: str) -> None:
        self.shards(name)

    def holds(self, name: str) -> bool:
        return name in self.sets

    def release(self, name: str) -> None:
        shards = self.sets.pop(name, None)
        if shards is not None:
            shards.close()
            for path in group_dirs(self._dir(name)).values():
                edge_files.mark_closed(path)
        self._unlock(name)

    def close(self) -> None:
        for name in list(self.sets):
            try:
                self.release(name)
            except Exception:  # pragma: no cover - closing is best effort
                pass
