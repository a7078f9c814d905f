"""``collections verify`` and ``repair`` in the library: a deep check of one collection (its record, its
point count, every point readable, every vector finite and of unit length, every payload decoded) and
the mends that need no model (a record written again, damaged points deleted, the count made true).
Re-ingesting what was lost is the caller's (the CLI runs ingest over the record's corpora)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from clamp2_engine.errors import CollectionDamagedError, CollectionError, StoreError
from clamp2_engine.store.collection import Collection, missing_points
from clamp2_engine.store.schema import CollectionRecord
from clamp2_engine.store.stores import Store
from clamp2_engine.types import VECTORS

NORM_SLACK = 1e-2  # cosine vectors are stored normalized: a length off by more is a damaged vector
PAGE = 256


@dataclass
class Health:
    """What :func:`verify` found: ``problems`` (sentences), ``damaged`` (point id -> why)."""

    name: str
    points: int | None = None
    recorded: int | None = None
    vectors: dict[str, int] = field(default_factory=dict)
    record: str = "ok"  # ok | lost | damaged
    problems: list[str] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)
    set_aside: list[str] = field(default_factory=list)  # segments the engine would have deleted
    corpora: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "points": self.points,
            "recorded_points": self.recorded,
            "vectors": self.vectors,
            "record": self.record,
            "problems": self.problems,
            "damaged_points": [{"id": k, "why": v} for k, v in sorted(self.damaged.items())],
            "set_aside_segments": self.set_aside,
            "corpora": self.corpora,
        }


def verify(store: Store, name: str, progress: Callable[[int], None] | None = None) -> Health:
    """Check collection ``name`` deeply; raises only when it cannot be opened at all."""
    health = Health(name)
    record = _record(store, name, health)
    coll = Collection(store.backend, name, record or _stand_in())
    store.backend.hold(name)
    health.points = coll.count()
    health.vectors = {v: coll.count(vector=v) for v in VECTORS}
    health.set_aside = list(getattr(store.backend, "set_aside", {}).get(name, []))
    if record is not None:
        health.recorded, health.corpora = record.points, dict(record.corpora)
        lost = missing_points(name, health.points, record.points) if record.points is not None else None
        if lost:
            health.problems.append(lost)
    for segment in health.set_aside:
        health.problems.append(f"segment {segment} had no version.info (set aside, not deleted)")
    for ids in _id_pages(coll):
        _check_page(coll, ids, health)
        if progress:
            progress(len(ids))
    if health.damaged:
        health.problems.append(f"{len(health.damaged)} point(s) damaged (unreadable, or vectors not intact)")
    return health


def _record(store: Store, name: str, health: Health) -> CollectionRecord | None:
    try:
        return CollectionRecord.from_dict(store.backend.read_meta(name), name)
    except CollectionDamagedError as exc:
        health.record = "lost" if "lost its record" in str(exc) else "damaged"
        health.problems.append(str(exc))
    except CollectionError as exc:
        health.record = "damaged"
        health.problems.append(str(exc))
    return None


def _stand_in() -> CollectionRecord:
    return CollectionRecord(model={"embed_dim": 0})


def _id_pages(coll: Collection) -> Any:
    for points in coll.scroll(payload=False, page=PAGE):
        yield [p.id for p in points]


def _check_page(coll: Collection, ids: list[str], health: Health) -> None:
    try:
        found = coll.retrieve(ids, payload=True, vectors=True)
    except StoreError:  # one point spoils the page: read them one by one to name it
        found = []
        for pid in ids:
            try:
                found += coll.retrieve([pid], payload=True, vectors=True)
            except StoreError as exc:
                health.damaged[pid] = (
                    f"unreadable: {str(exc).partition(' could not be read: ')[2][:120] or exc}"
                )
    for p in found:
        why = _vector_problem(p.vectors) or (None if isinstance(p.payload, dict) else "payload is not a map")
        if why:
            health.damaged[p.id] = why


def _vector_problem(vectors: dict[str, Any]) -> str | None:
    for name, vec in vectors.items():
        if name not in VECTORS:
            continue
        a = np.asarray(vec, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            return f"{name} vector has values that are not numbers"
        norm = float(np.linalg.norm(a))
        if not math.isclose(norm, 1.0, abs_tol=NORM_SLACK):
            return f"{name} vector has length {norm:.4g} (1 when intact)"
    return None


@dataclass
class Mended:
    """What :func:`repair` did."""

    record: str | None = None  # how the record was written again
    deleted: int = 0
    points: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"record": self.record, "deleted_points": self.deleted, "points": self.points}


def repair(store: Store, name: str, health: Health, identity: Any = None) -> Mended:
    """Mend what :func:`verify` found without a model: the record written again (from its copy, else
    from ``identity``, the model that made the vectors), damaged points deleted, the count made what the
    collection holds. What was lost is then missing from the collection, for ingest to add again."""
    done = Mended()
    backend = store.backend
    if health.record != "ok":
        meta = backend.read_backup(name) if hasattr(backend, "read_backup") else None
        if meta is not None:
            done.record = "from its copy"
        elif identity is not None:
            meta = _record_for(store, name, identity)
            done.record = f"for the model {identity.name}"
        else:
            raise CollectionDamagedError(
                f"the record of collection {name!r} has no copy to restore: name the model that made its "
                "vectors to write it again"
            )
        backend.write_meta(name, meta)
    coll = store.collection(name, check=False)
    if health.damaged and backend.engine == "edge":
        done.deleted = _rebuild_without(store, coll, set(health.damaged))
        coll = store.collection(name, check=False)
    elif health.damaged:
        done.deleted = coll.delete(list(health.damaged))
    coll.write_record(replace(coll.record, points=coll.count()))
    done.points = coll.record.points or 0
    return done


def _rebuild_without(store: Store, coll: Collection, damaged: set[str]) -> int:
    """Copy every intact point of ``coll`` into a new storage that then takes its place (the old one is
    set aside, not deleted). Deleting a point in place is no mend: the engine reads a point's payload to
    delete it, and an undecodable one would stop the storage from opening again."""
    name, backend = coll.name, store.backend
    spare = f"{name}.repairing"
    if backend.exists(spare):
        store.drop(spare)
    target = store.create(spare, replace(coll.record, points=0))
    for ids in _id_pages(coll):
        intact = [i for i in ids if i not in damaged]
        if intact:
            target.upsert(coll.retrieve(intact, payload=True, vectors=True))
    backend.replace_with(name, spare)
    return len(damaged)


def _record_for(store: Store, name: str, identity: Any) -> dict[str, Any]:
    """A record for ``identity``'s model, refused when the stored vectors are of another size."""
    from clamp2_engine.store.schema import new_record

    record = new_record(identity, {})
    coll = Collection(store.backend, name, record)
    for points in coll.scroll(payload=False, vectors=True, page=1):
        dims = {len(v) for k, v in points[0].vectors.items() if k in VECTORS}
        if dims and dims != {record.dim}:
            raise CollectionError(
                f"collection {name!r} holds {dims.pop()}-d vectors; the model {identity.name} makes "
                f"{record.dim}-d ones"
            )
        break
    return {**record.as_dict(), "points": None}
