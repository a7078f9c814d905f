"""``Store`` (the collections of one place) and ``Collection`` (one of them): what every command uses.

A collection holds the vectors of one model, named by its record. It writes points (with their folded
``keys`` and their lexical BM25 vector), reads back what ingest needs to be idempotent, and searches: by
vectors, one name or ``any`` (abc and mtf, each point scored by its best); by words (``lexical``); both
at once (``hybrid``: one batched request, a dense search per vector name and a sparse one, fused by
Qdrant's weighted reciprocal rank fusion); by example (``like`` / ``unlike``); and with maximal marginal
relevance (``diversity``).
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from clamp2_engine.errors import (
    CollectionDamagedError,
    CollectionError,
    StoreError,
    about,
)
from clamp2_engine.store.backend import Backend, Scroll, Search
from clamp2_engine.store.fields import FACETS, INDEXES, KEYS, display_path, fold, with_keys
from clamp2_engine.store.filters import Condition, Filters, exact, parse_filters, present
from clamp2_engine.store.lexical import LEXICAL, document_vector, query_vector
from clamp2_engine.store.schema import (
    SCHEMA_VERSION,
    STATE_FIELDS,
    CollectionRecord,
    Hit,
    Point,
    UnitState,
    check_model,
)
from clamp2_engine.types import LEXICAL_WEIGHT, MODALITIES, MUSIC_VECTORS, VECTORS

DIVERSITY = 0.5  # `diverse`: relevance and variety weighed alike (maximal marginal relevance)
HNSW_EF = 256  # HNSW candidates per search (Qdrant's default is 100): recall@10 >= 0.95 at 1M points
PREFETCH = 100  # candidates each side of a hybrid search brings to the fusion
WEIGHTS = (1.0, LEXICAL_WEIGHT)  # hybrid: (semantic, lexical) weights of the fusion
RRF_K = 2  # reciprocal rank fusion's constant (Qdrant's default): see weighted_rrf
COSINE_SLACK = 1.0 + 1e-3  # a cosine beyond this (float error aside) comes from a damaged vector


class SearchSpec(Protocol):
    """What a search asks for, however it arrived (the CLI's options, the HTTP API's body)."""

    text: str | None
    mode: str  # hybrid | semantic | lexical
    weights: tuple[float, float] | None  # hybrid: (semantic, lexical)
    like: Sequence[str]
    unlike: Sequence[str]
    modality: str
    k: int
    offset: int
    filters: Sequence[str]
    diverse: bool


def vector_names(modality: str) -> tuple[str, ...]:
    """The vector names a search of ``modality`` looks at."""
    if modality == "any":
        return MUSIC_VECTORS
    if modality not in VECTORS:
        raise CollectionError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    return (modality,)


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

    def search(
        self,
        vectors: np.ndarray | Sequence[np.ndarray],
        *,
        modality: str = "any",
        limit: int = 10,
        offset: int = 0,
        filters: Filters | Sequence[str] | None = None,
        diversity: float | None = None,
        with_payload: bool | list[str] = True,
        hnsw_ef: int | None = HNSW_EF,
    ) -> list[list[Hit]]:
        """The nearest points to each query vector (a 1-d vector counts as one query); with ``diversity``
        (0..1), results re-ranked by maximal marginal relevance."""
        queries = np.asarray(vectors, dtype=np.float32)
        queries = queries[None] if queries.ndim == 1 else queries
        flt = parse_filters(filters) or None
        names = vector_names(modality)
        fused = len(names) > 1  # payloads are fetched for the fused hits only (3 ms less of 13 for "any")
        searches = [
            Search(
                using,
                limit + offset,
                q.tolist(),
                diversity=diversity,
                filters=flt,
                with_payload=False if fused else with_payload,
                hnsw_ef=hnsw_ef,
            )
            for q in queries
            for using in names
        ]
        results = self.backend.query(self.name, searches)
        self.check_scores(results)
        per_query = [results[i * len(names) : (i + 1) * len(names)] for i in range(len(queries))]
        found = [self._fuse(rows, names, limit, offset) for rows in per_query]
        if fused and with_payload:
            self._fill_payloads([h for hits in found for h in hits], with_payload)
        return found

    def _fill_payloads(self, hits: list[Hit], with_payload: bool | list[str]) -> None:
        """Each hit's payload (without the folded keys), in one request."""
        if not hits:
            return
        found = {p.id: p.payload for p in self.retrieve(list({h.id: 0 for h in hits}), payload=with_payload)}
        for h in hits:
            h.payload = {k: v for k, v in found.get(h.id, {}).items() if k != KEYS}

    def recommend(
        self,
        like: Sequence[str] = (),
        unlike: Sequence[str] = (),
        *,
        vector: np.ndarray | None = None,
        modality: str = "any",
        limit: int = 10,
        offset: int = 0,
        filters: Filters | Sequence[str] | None = None,
    ) -> list[Hit]:
        """Points like the pieces ``like`` (and the query ``vector``, when given), unlike ``unlike``; the
        examples themselves are left out."""
        given = [*like, *unlike]
        for pid in given:
            try:
                uuid.UUID(pid)
            except ValueError:
                raise CollectionError(f"{pid!r} is not a point id (a UUID, as in the hits' `id`)") from None
        found = {p.id: p for p in self.retrieve(given, payload=False, vectors=True)} if given else {}
        missing = [i for i in given if i not in found]
        if missing:
            raise CollectionError(f"no piece {missing[0]!r} in collection {self.name!r}")
        if not like and vector is None:
            raise about(
                CollectionError("pieces to steer away from need a query or pieces to be like too"), "unlike"
            )
        names = vector_names(modality)
        searches, used = [], []
        extra = [np.asarray(vector, dtype=np.float32).tolist()] if vector is not None else []
        for using in names:
            pos = extra + [list(found[i].vectors[using]) for i in like if using in found[i].vectors]
            neg = [list(found[i].vectors[using]) for i in unlike if using in found[i].vectors]
            if pos:
                limit_n = limit + offset + len(given)
                searches.append(
                    Search(
                        using,
                        limit_n,
                        positives=pos,
                        negatives=neg,
                        filters=parse_filters(filters) or None,
                        hnsw_ef=HNSW_EF,
                    )
                )
                used.append(using)
        if not searches:
            raise about(
                CollectionError(f"the pieces given as examples have no {'/'.join(names)} vector"), "like"
            )
        rows = self.backend.query(self.name, searches)
        rows = [[r for r in row if r[0] not in set(given)] for row in rows]
        return self._fuse(rows, tuple(used), limit, offset)

    def hybrid(
        self,
        vector: np.ndarray | None,
        text: str,
        *,
        modality: str = "any",
        limit: int = 10,
        offset: int = 0,
        filters: Filters | Sequence[str] | None = None,
        weights: tuple[float, float] | None = None,
        with_payload: bool | list[str] = True,
    ) -> list[Hit]:
        """Points found by meaning (``vector``, on each vector name of ``modality``, a point ranked by its
        best score as :meth:`search` does) and by the words of ``text`` (the lexical vector), fused by
        Qdrant's weighted reciprocal rank fusion; without ``vector``, by words alone (BM25 scores). One
        batched request brings each side's best ``PREFETCH``; when no word matched, the ranking is by meaning
        alone (cosine scores; the hits carry their vector's name, not "hybrid"). The fusion is done here, ties broken by id,
        so that every page agrees with the others (the engine orders equal scores differently from one
        call to the next, and duplicates of a piece tie). Scores are fusion scores: position p of a side
        adds ``1 / (p / weight + RRF_K - 1)``."""
        self._need_lexical()
        flt = parse_filters(filters) or None
        n = max(PREFETCH, limit + offset)
        sides = [] if vector is None else list(vector_names(modality))
        dense = np.asarray(vector, dtype=np.float32).ravel().tolist() if vector is not None else None
        searches = [Search(u, n, dense, filters=flt, with_payload=False, hnsw_ef=HNSW_EF) for u in sides]
        searches.append(Search(LEXICAL, n, query_vector(text), filters=flt, with_payload=False))
        rows = self.backend.query(self.name, searches)
        self.check_scores(rows[:-1])
        words = self._fuse(rows[-1:], (LEXICAL,), n, 0)
        if sides and not words:  # no word matched: meaning alone, its hits named by their vectors
            hits = self._fuse(rows[:-1], tuple(sides), limit, offset)
        elif sides:
            meaning = self._fuse(rows[:-1], tuple(sides), n, 0)
            semantic, lexical = weights or WEIGHTS
            fused = weighted_rrf([[h.id for h in meaning], [h.id for h in words]], [semantic, lexical], RRF_K)
            ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[offset : offset + limit]
            hits = [Hit(r, pid, score, "hybrid", {}) for r, (pid, score) in enumerate(ranked, offset + 1)]
        else:
            hits = words[offset : offset + limit]
        if with_payload:
            self._fill_payloads(hits, with_payload)
        return hits

    def _need_lexical(self) -> None:
        if not self.record.lexical:
            raise CollectionError(
                f"collection {self.name!r} has no lexical index (it was made before hybrid search): "
                f"reindex it to search by words"
            )

    def find(self, vector: np.ndarray | None, request: SearchSpec) -> tuple[list[Hit], str | None]:
        """A search as a person asks for it: by meaning (a query vector), words (``mode`` lexical), both
        (``mode`` hybrid, the query's ``text`` beside its vector), by examples, or a query and examples;
        ``diverse`` for MMR. Also, when nothing is found, why (see :meth:`explain_empty`)."""
        r = request
        text = (r.text or "").strip() if r.mode in ("hybrid", "lexical") else ""
        if r.like or r.unlike:
            hits = self.recommend(
                r.like,
                r.unlike,
                vector=vector,
                modality=r.modality,
                limit=r.k,
                offset=r.offset,
                filters=r.filters,
            )
        elif text and (r.mode == "lexical" or not r.diverse):
            hits = self.hybrid(
                None if r.mode == "lexical" else vector,
                text,
                modality=r.modality,
                limit=r.k,
                offset=r.offset,
                filters=r.filters,
                weights=r.weights,
            )
        else:
            if vector is None:
                raise CollectionError("a semantic search needs a query vector")
            hits = self.search(
                vector,
                modality=r.modality,
                limit=r.k,
                offset=r.offset,
                filters=r.filters,
                diversity=DIVERSITY if r.diverse else None,
            )[0]
        return hits, (None if hits else self.explain_empty(r.filters))

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

    @staticmethod
    def _fuse(
        rows: list[list[tuple[str, float, dict]]], names: Sequence[str], limit: int, offset: int
    ) -> list[Hit]:
        best: dict[str, Hit] = {}
        for using, row in zip(names, rows, strict=True):
            for pid, score, payload in row:
                if pid not in best or score > best[pid].score:
                    best[pid] = Hit(0, pid, score, using, {k: v for k, v in payload.items() if k != KEYS})
        ranked = sorted(best.values(), key=lambda h: (-h.score, h.id))[offset : offset + limit]
        for r, h in enumerate(ranked, offset + 1):
            h.rank = r
        return ranked

    def explain_empty(self, filters: Filters | Sequence[str] | None) -> str | None:
        """Why a filtered search found nothing: the condition no piece meets, with the closest values the
        collection has; ``None`` when the filters are not the reason."""
        flt = parse_filters(filters)
        if not flt or not self.count():
            return None
        for cond in flt.must:
            if self.count(Filters((cond,))):
                continue
            values = [v for v, _n in self.facet(cond.name)] if cond.name in FACETS else []
            if (cond.folded or cond.key == display_path(cond.name)) and not values:
                if not self.count(present(f"{KEYS}.{cond.name}")) and not self.count(present(cond.key)):
                    return f"no piece has a field {cond.field!r}"
            return f"no piece has {cond.field} {_wanted(cond)}{_closest(cond, values)}"
        return "no piece matches all the filters together" if self.count(flt) == 0 else None

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


def weighted_rrf(
    rankings: Sequence[Sequence[str]], weights: Sequence[float], k: int = RRF_K
) -> dict[str, float]:
    """Qdrant's weighted reciprocal rank fusion: the item at position p (1, 2, ...) of a ranking adds
    ``1 / (p / weight + k - 1)`` to its score (a ranking of weight 0 adds nothing)."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight <= 0:
            continue
        for p, pid in enumerate(ranking, 1):
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (p / weight + k - 1)
    return scores


def _wanted(cond: Condition) -> str:
    shown = [v if len(v) <= 60 else v[:57] + "..." for v in cond.values[:5]]
    more = f" (and {len(cond.values) - 5} more)" if len(cond.values) > 5 else ""
    return " or ".join(repr(v) for v in shown) + more


def _closest(cond: Condition, values: list[str]) -> str:
    folded = {fold(v): v for v in values}
    wanted = fold(cond.values[0])
    close = [folded[f] for f in difflib.get_close_matches(wanted, list(folded), n=3, cutoff=0.4)] or [
        v for f, v in folded.items() if wanted in f or f in wanted
    ][:3]
    return f"; closest: {', '.join(repr(v) for v in close)}" if close else ""


def _cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom else 0.0
