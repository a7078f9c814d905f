"""``Collection``: one collection of CLaMP 2 vectors and its record. It writes points (with their folded
``keys`` and their lexical BM25 vector), reads back what ingest needs to be idempotent, answers the
engine's searches (:meth:`Collection.query`: a batch of dense and sparse searches, scores checked for
damage), gives facets, and copies itself verified. What to search and how to rank the answers (fusion,
MMR, examples, empty-result explanations) is the search wing's, :mod:`clamp2_engine.search`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from clamp2_engine.errors import (
    CollectionDamagedError,
    CollectionError,
    StoreError,
)
from clamp2_engine.store.backend import Backend, Scroll, Search
from clamp2_engine.store.fields import INDEXES, KEYS, display_path, fold, with_keys
from clamp2_engine.store.filters import Filters, exact, parse_filters
from clamp2_engine.store.lexical import LEXICAL, document_vector
from clamp2_engine.store.quantization import quantization
from clamp2_engine.store.schema import (
    SCHEMA_VERSION,
    STATE_FIELDS,
    CollectionRecord,
    Hit,
    Point,
    UnitState,
    check_model,
)
from clamp2_engine.types import VECTORS

COSINE_SLACK = 1.0 + 1e-3  # a cosine beyond this (float error aside) comes from a damaged vector


class Collection:
    """One collection of CLaMP 2 vectors and its record."""

    def __init__(self, backend: Backend, name: str, record: CollectionRecord):
        self.backend, self.name, self.record = backend, name, record

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, {self.backend.spec.describe()})"

    # --- writing ---------------------------------------------------------------------------------

    def upsert(self, points: Sequence[Point]) -> None:
        """Write ``points`` (their ``keys`` and lexical vector computed here); existing ids are replaced. The
        record's point count follows (after the write: a count above the record is a write that stopped
        before its record, never a loss)."""
        self.backend.upsert(self.name, [self._complete(p) for p in points])
        self.keep_count()

    def keep_count(self, points: int | None = None) -> None:
        """Write the point count (``points``, or counted now) into the record when it changed."""
        n = self.count() if points is None else points
        if n != self.record.points:
            self.write_record(replace(self.record, points=n))

    def check_points(self) -> None:
        """:class:`CollectionDamagedError` when the collection holds fewer points than its record says."""
        if self.record.points is None:
            return
        n = self.count()
        problem = missing_points(self.name, n, self.record.points)
        if problem:
            raise CollectionDamagedError(problem)
        if n > self.record.points:  # a write that stopped before its record: nothing lost
            self.keep_count(n)

    def _complete(self, p: Point, vectors: bool = True) -> Point:
        """``p`` with canonical metadata, ``keys`` and (in a collection that has it) its lexical vector;
        ``vectors=False``: with the lexical vector alone."""
        payload = with_keys(p.payload)
        dense = {k: v for k, v in p.vectors.items() if k != LEXICAL} if vectors else {}
        lexical = {LEXICAL: document_vector(payload)} if self.record.lexical else {}
        return Point(p.id, {**dense, **lexical}, payload)

    def reindex(self, page: int = 256, progress: Callable[[int], None] | None = None) -> int:
        """Bring the collection to the current schema without re-embedding: the lexical vector added and
        computed from the stored payloads, metadata under canonical names, ``keys`` recomputed, the word
        and facet indexes made. Dense vectors are not touched. Returns the points rewritten."""
        self.backend.add_lexical(self.name)
        self.record = CollectionRecord(**{**self.record.as_dict(), "lexical": True, "schema": SCHEMA_VERSION})
        for index in INDEXES:
            self.backend.set_index(self.name, index)
        done = 0
        for points in self.scroll(page=page):
            self.backend.rewrite(self.name, [self._complete(p, vectors=False) for p in points])
            done += len(points)
            if progress:
                progress(len(points))
        self.write_record(self.record)
        return done

    def delete(self, ids: Sequence[str]) -> int:
        """Delete points ``ids``; the record's count is lowered first (a delete that stops half-way leaves
        more points than the record says, never fewer)."""
        ids = list(ids)
        if not ids:
            return 0
        if self.record.points is not None:
            present = len(self.retrieve(ids, payload=False))
            self.keep_count(max(0, self.count() - present))
        self.backend.delete(self.name, ids)
        self.keep_count()
        return len(ids)

    def write_record(self, record: CollectionRecord) -> None:
        self.backend.write_meta(self.name, record.as_dict())
        self.record = record

    def optimize(self) -> bool:
        """Build the HNSW and payload indexes now (the embedded engine; a server does it by itself)."""
        return self.backend.optimize(self.name)

    def release(self) -> None:
        """Let another process open this collection (closing the embedded shard until next use)."""
        self.backend.release(self.name)

    # --- reading ---------------------------------------------------------------------------------

    def count(self, filters: Filters | Sequence[str] | None = None, vector: str | None = None) -> int:
        return self.backend.count(self.name, parse_filters(filters) or None, vector)

    def retrieve(
        self, ids: Sequence[str], payload: bool | list[str] = True, vectors: bool = False
    ) -> list[Point]:
        return self.backend.retrieve(self.name, list(ids), payload, vectors)

    def scroll(
        self,
        filters: Filters | None = None,
        payload: bool | list[str] = True,
        vectors: bool = False,
        page: int = 1024,
    ) -> Iterator[list[Point]]:
        return self.backend.scroll(self.name, Scroll(filters, payload, vectors, page))

    def unit_states(self, corpus: str) -> dict[str, UnitState]:
        """Every unit of ``corpus`` in the collection: its points and content hashes."""
        states: dict[str, UnitState] = {}
        for page in self.scroll(exact("corpus", corpus), payload=list(STATE_FIELDS), page=4096):
            for p in page:
                st = states.setdefault(str(p.payload.get("unit")), UnitState())
                st.ids.append(p.id)
                st.hashes.append(str(p.payload.get("unit_hash")))
                st.parts = int(p.payload.get("unit_parts") or 0)
        return states

    def info(self) -> dict[str, Any]:
        """Engine, points, vectors per name, index state, payload indexes, disk size, the record."""
        return {
            "name": self.name,
            "store": self.backend.spec.describe(),
            "points": self.count(),
            "vectors": {
                v: self.count(vector=v) for v in (*VECTORS, *((LEXICAL,) if self.record.lexical else ()))
            },
            "distance": "cosine",
            "dim": self.record.dim,
            **self.backend.info(self.name),
            **self.record.as_dict(),
        }

    # --- searching -------------------------------------------------------------------------------

    def query(self, searches: Sequence[Search], check: bool = True) -> list[list[tuple[str, float, dict]]]:
        """The engine's answers to ``searches``, in one batched call: per search, ``(point id, score,
        payload)`` best first; ``check``: cosine scores no intact vector can give raise
        :class:`CollectionDamagedError` (see :meth:`check_scores`)."""
        q = quantization(self.record.quantization)
        if q.compressed:  # candidates from the compressed copy, rescored against the originals
            searches = [replace(s, oversampling=s.oversampling or q.oversampling) for s in searches]
        rows = self.backend.query(self.name, list(searches))
        if check:
            self.check_scores([row for s, row in zip(searches, rows, strict=True) if s.using != LEXICAL])
        return rows

    def fill_payloads(self, hits: list[Hit], with_payload: bool | list[str] = True) -> None:
        """Each hit's payload (without the folded keys), in one request."""
        if not hits:
            return
        found = {p.id: p.payload for p in self.retrieve(list({h.id: 0 for h in hits}), payload=with_payload)}
        for h in hits:
            h.payload = {k: v for k, v in found.get(h.id, {}).items() if k != KEYS}

    def need_lexical(self) -> None:
        """:class:`CollectionError` when the collection cannot be searched by words."""
        if not self.record.lexical:
            raise CollectionError(
                f"collection {self.name!r} has no lexical index (it was made before hybrid search): "
                f"reindex it to search by words"
            )

    def check_scores(self, rows: Sequence[Sequence[tuple[str, float, dict]]]) -> None:
        """:class:`CollectionDamagedError` when cosine searches scored what no intact vector can: outside
        [-1, 1], not a number, or every hit exactly 0 (vectors zeroed on disk)."""
        scores = [s for row in rows for _pid, s, _p in row]
        if not scores:
            return
        bad = next((s for s in scores if not -COSINE_SLACK <= s <= COSINE_SLACK), None)
        if bad is not None or all(s == 0.0 for s in scores):
            what = f"a cosine of {bad:.4g}" if bad is not None else "every hit a cosine of exactly 0"
            raise CollectionDamagedError(
                f"collection {self.name!r} is damaged: a search scored {what}, which intact vectors "
                f"cannot; run `clamp2-engine collections verify {self.name}`"
            )

    def facet(self, field: str, limit: int = 1000) -> list[tuple[str, int]]:
        """The most common display values of a facet field (:data:`FACETS`), with their counts; values
        that differ only in case or accents are counted together, under their most common spelling."""
        groups: dict[str, list[tuple[str, int]]] = {}
        for value, n in self.backend.facet(self.name, display_path(field), limit):
            groups.setdefault(fold(value), []).append((value, n))
        merged = [(max(g, key=lambda vn: vn[1])[0], sum(n for _v, n in g)) for g in groups.values()]
        return sorted(merged, key=lambda vn: (-vn[1], vn[0]))[:limit]

    # --- copying ---------------------------------------------------------------------------------

    def copy_to(
        self,
        store: Any,
        name: str | None = None,
        page: int = 512,
        progress: Callable[[int], None] | None = None,
    ) -> Collection:
        """This collection's record, vectors and payloads in ``store`` (as ``name``); idempotent (same ids).
        The target is verified: the same count per vector name, and every vector read back equal."""
        name = name or self.name
        if store.exists(name):
            target = store.collection(name)
            check_model(self.record, target.record.model, name)
        else:
            record = {**self.record.as_dict(), "schema": SCHEMA_VERSION, "lexical": True, "points": 0}
            target = store.create(name, CollectionRecord(**record))
        for points in self.scroll(vectors=True, page=page):
            target.upsert(points)
            if progress:
                progress(len(points))
        target.verify_copy_of(self, page)
        return target

    def verify_copy_of(self, source: Collection, page: int = 512) -> None:
        """Raise :class:`StoreError` unless this collection holds every point and vector of ``source``."""
        for v in (None, *VECTORS):
            mine, theirs = self.count(vector=v), source.count(vector=v)
            if mine < theirs:
                what = f"{v!r} vectors" if v else "points"
                raise StoreError(f"copy incomplete: {mine} of {theirs} {what} in {self.name!r}")
        for points in source.scroll(payload=False, vectors=True, page=page):
            copied = {p.id: p for p in self.retrieve([p.id for p in points], payload=False, vectors=True)}
            for p in points:
                for v, vec in p.vectors.items():
                    if v not in VECTORS:
                        continue
                    got = copied.get(p.id)
                    if got is None or v not in got.vectors or _cosine(vec, got.vectors[v]) < 0.99999:
                        raise StoreError(f"copy differs from the source at point {p.id} ({v} vector)")


def missing_points(name: str, points: int, recorded: int) -> str | None:
    """The sentence for a collection holding ``points`` where its record says ``recorded`` (None: none
    are missing)."""
    if points >= recorded:
        return None
    return (
        f"collection {name!r} holds {points} of its {recorded} points: {recorded - points} were lost from its "
        f"storage; `clamp2-engine collections repair {name}` ingests them again from their files"
    )


def _cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom else 0.0
