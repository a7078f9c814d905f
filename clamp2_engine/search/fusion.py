"""How rankings become one: a point's best score over vector names, and Qdrant's weighted reciprocal rank
fusion (as qdrant-client's ``hybrid/fusion.py``), both with ties broken by id so that every page agrees
with the others (the engine orders equal scores differently from one call to the next)."""

from __future__ import annotations

from collections.abc import Sequence

from clamp2_engine.store.fields import KEYS
from clamp2_engine.store.schema import Hit
from clamp2_engine.types import LEXICAL_WEIGHT

RRF_K = 2  # reciprocal rank fusion's constant (Qdrant's default): see weighted_rrf
WEIGHTS = (1.0, LEXICAL_WEIGHT)  # hybrid: (semantic, lexical) weights of the fusion

Row = Sequence[tuple[str, float, dict]]  # one search's (point id, score, payload), best first


def best_ranking(rows: Sequence[Row], names: Sequence[str]) -> list[tuple[str, tuple[float, str, dict]]]:
    """Each point once, by its best score over the searches (``names[i]`` made ``rows[i]``), best first:
    ``(point id, (score, vector name, payload))``."""
    best: dict[str, tuple[float, str, dict]] = {}
    for using, row in zip(names, rows, strict=True):
        for pid, score, payload in row:
            seen = best.get(pid)
            if seen is None or score > seen[0]:
                best[pid] = (score, using, payload)
    return sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))


def best_score(rows: Sequence[Row], names: Sequence[str], limit: int, offset: int) -> list[Hit]:
    """One ranking from a search per vector name (``names[i]`` made ``rows[i]``): each point by its best
    score, carrying that vector's name; the page ``offset .. offset + limit``, ranks from ``offset + 1``."""
    page = best_ranking(rows, names)[offset : offset + limit]
    return [
        Hit(r, pid, score, using, {k: v for k, v in payload.items() if k != KEYS} if payload else {})
        for r, (pid, (score, using, payload)) in enumerate(page, offset + 1)
    ]


def weighted_rrf(
    rankings: Sequence[Sequence[str]], weights: Sequence[float], k: int | None = None
) -> dict[str, float]:
    """Qdrant's weighted reciprocal rank fusion: the item at position p (1, 2, ...) of a ranking adds
    ``1 / (p / weight + k - 1)`` to its score (a ranking of weight 0 adds nothing; ``k``: :data:`RRF_K`)."""
    k = RRF_K if k is None else k
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        if weight <= 0:
            continue
        for p, pid in enumerate(ranking, 1):
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (p / weight + k - 1)
    return scores


def rrf_page(
    rankings: Sequence[Sequence[str]], weights: Sequence[float], limit: int, offset: int
) -> list[Hit]:
    """The page of the weighted RRF of ``rankings`` (point ids, best first): hits named ``hybrid``, scores
    the fusion's."""
    fused = weighted_rrf(rankings, weights)
    ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[offset : offset + limit]
    return [Hit(r, pid, score, "hybrid", {}) for r, (pid, score) in enumerate(ranked, offset + 1)]
