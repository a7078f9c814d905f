"""Searches over a :class:`~clamp2_engine.store.Collection`: by vectors (one name, or ``any``: abc and
mtf, each point by its best score), by example (``like`` / ``unlike``), by words and meaning together
(``hybrid``: one batched request, a dense search per vector name and a sparse one, fused by Qdrant's
weighted reciprocal rank fusion), with maximal marginal relevance (``diversity``, Qdrant's own MMR), and
:func:`find`, a :class:`~.query.Query` as a person asks it. The collection stores and answers the engine's
searches; what to ask and how to rank the answers is decided here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from clamp2_engine.errors import CollectionError, about
from clamp2_engine.search.explain import explain_empty
from clamp2_engine.search.fusion import WEIGHTS, best_ranking, best_score, rrf_page
from clamp2_engine.search.query import Query, vector_names
from clamp2_engine.store.backend import Search
from clamp2_engine.store.collection import Collection
from clamp2_engine.store.filters import Filters, parse_filters
from clamp2_engine.store.lexical import LEXICAL, query_vector
from clamp2_engine.store.schema import Hit

DIVERSITY = 0.5  # `diverse`: relevance and variety weighed alike (maximal marginal relevance)
HNSW_EF = 256  # HNSW candidates per search (Qdrant's default is 100) up to LARGE points
LARGE, HNSW_EF_LARGE = 50_000, 512  # beyond: recall@10 >= 0.99 up to 1M points needs more (docs/scale.md)
PREFETCH = 100  # candidates each side of a hybrid search brings to the fusion

FilterArg = Filters | Sequence[str] | None


def ef_for(collection: Collection) -> int:
    """HNSW candidates per search for ``collection``, by its size (measured in benchmarks/bench_store.py:
    recall@10 >= 0.99 against exact search at 100k, 300k and 1M points)."""
    return HNSW_EF_LARGE if (collection.record.points or 0) > LARGE else HNSW_EF


def nearest(
    collection: Collection,
    vectors: np.ndarray | Sequence[np.ndarray],
    *,
    modality: str = "any",
    limit: int = 10,
    offset: int = 0,
    filters: FilterArg = None,
    diversity: float | None = None,
    with_payload: bool | list[str] = True,
    hnsw_ef: int | None = None,
) -> list[list[Hit]]:
    """The nearest points to each query vector (a 1-d vector counts as one query); with ``diversity``
    (0..1), results re-ranked by maximal marginal relevance; ``hnsw_ef``: :func:`ef_for` unless given."""
    ef = hnsw_ef or ef_for(collection)
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
            hnsw_ef=ef,
        )
        for q in queries
        for using in names
    ]
    results = collection.query(searches)
    per_query = [results[i * len(names) : (i + 1) * len(names)] for i in range(len(queries))]
    found = [best_score(rows, names, limit, offset) for rows in per_query]
    if fused and with_payload:
        collection.fill_payloads([h for hits in found for h in hits], with_payload)
    return found


def recommend(
    collection: Collection,
    like: Sequence[str] = (),
    unlike: Sequence[str] = (),
    *,
    vector: np.ndarray | None = None,
    modality: str = "any",
    limit: int = 10,
    offset: int = 0,
    filters: FilterArg = None,
) -> list[Hit]:
    """Points like the pieces ``like`` (and the query ``vector``, when given), unlike ``unlike``; the
    examples themselves are left out."""
    given = [*like, *unlike]
    for pid in given:
        try:
            uuid.UUID(pid)
        except ValueError:
            raise CollectionError(f"{pid!r} is not a point id (a UUID, as in the hits' `id`)") from None
    found = {p.id: p for p in collection.retrieve(given, payload=False, vectors=True)} if given else {}
    missing = [i for i in given if i not in found]
    if missing:
        raise CollectionError(f"no piece {missing[0]!r} in collection {collection.name!r}")
    if not like and vector is None:
        raise about(
            CollectionError("pieces to steer away from need a query or pieces to be like too"), "unlike"
        )
    names = vector_names(modality)
    flt = parse_filters(filters) or None
    searches, used = [], []
    extra = [np.asarray(vector, dtype=np.float32).tolist()] if vector is not None else []
    for using in names:
        pos = extra + [list(found[i].vectors[using]) for i in like if using in found[i].vectors]
        neg = [list(found[i].vectors[using]) for i in unlike if using in found[i].vectors]
        if pos:
            n = limit + offset + len(given)
            searches.append(
                Search(using, n, positives=pos, negatives=neg, filters=flt, hnsw_ef=ef_for(collection))
            )
            used.append(using)
    if not searches:
        raise about(CollectionError(f"the pieces given as examples have no {'/'.join(names)} vector"), "like")
    rows = collection.query(searches, check=False)
    rows = [[r for r in row if r[0] not in set(given)] for row in rows]
    return best_score(rows, tuple(used), limit, offset)


def hybrid(
    collection: Collection,
    vector: np.ndarray | None,
    text: str,
    *,
    modality: str = "any",
    limit: int = 10,
    offset: int = 0,
    filters: FilterArg = None,
    weights: tuple[float, float] | None = None,
    with_payload: bool | list[str] = True,
) -> list[Hit]:
    """Points found by meaning (``vector``, on each vector name of ``modality``, a point ranked by its
    best score as :func:`nearest` does) and by the words of ``text`` (the lexical vector), fused by
    Qdrant's weighted reciprocal rank fusion; without ``vector``, by words alone (BM25 scores). One
    batched request brings each side's best ``PREFETCH``; when no word matched, the ranking is by meaning
    alone (cosine scores; the hits carry their vector's name, not "hybrid"). Scores are fusion scores:
    position p of a side adds ``1 / (p / weight + RRF_K - 1)``."""
    collection.need_lexical()
    flt = parse_filters(filters) or None
    n = max(PREFETCH, limit + offset)
    sides = [] if vector is None else list(vector_names(modality))
    dense = np.asarray(vector, dtype=np.float32).ravel().tolist() if vector is not None else None
    searches = [
        Search(u, n, dense, filters=flt, with_payload=False, hnsw_ef=ef_for(collection)) for u in sides
    ]
    searches.append(Search(LEXICAL, n, query_vector(text), filters=flt, with_payload=False))
    rows = collection.query(searches)
    if sides and not rows[-1]:  # no word matched: meaning alone, its hits named by their vectors
        hits = best_score(rows[:-1], tuple(sides), limit, offset)
    elif sides:
        meaning = [pid for pid, _ in best_ranking(rows[:-1], tuple(sides))[:n]]
        words = [pid for pid, _ in best_ranking(rows[-1:], (LEXICAL,))[:n]]
        hits = rrf_page([meaning, words], weights or WEIGHTS, limit, offset)
    else:
        hits = best_score(rows[-1:], (LEXICAL,), limit, offset)
    if with_payload:
        collection.fill_payloads(hits, with_payload)
    return hits


def find(collection: Collection, vector: np.ndarray | None, query: Query) -> tuple[list[Hit], str | None]:
    """A search as a person asks for it: by meaning (a query vector), words (``mode`` lexical), both
    (``mode`` hybrid, the query's ``text`` beside its vector), by examples, or a query and examples;
    ``diverse`` for MMR. Also, when nothing is found, why (see :func:`.explain.explain_empty`)."""
    q = query
    text = (q.text or "").strip() if q.mode in ("hybrid", "lexical") else ""
    page = {"modality": q.modality, "limit": q.k, "offset": q.offset, "filters": q.conditions}
    if q.like or q.unlike:
        hits = recommend(collection, q.like, q.unlike, vector=vector, **page)
    elif text and (q.mode == "lexical" or not q.diverse):
        hits = hybrid(collection, None if q.mode == "lexical" else vector, text, weights=q.weights, **page)
    else:
        if vector is None:
            raise CollectionError("a semantic search needs a query vector")
        hits = nearest(collection, vector, diversity=DIVERSITY if q.diverse else None, **page)[0]
    return hits, (None if hits else explain_empty(collection, q.conditions))
