"""The search wing: a collection searched as a person asks (:class:`SearchSession`, :class:`Query`), the
query models that encode a query (:mod:`.models`), the searches and their ranking (:mod:`.ranking`,
:mod:`.fusion`: best score over vector names, weighted RRF, MMR), and why a search found nothing
(:mod:`.explain`). The store (:mod:`clamp2_engine.store`) stores; this package decides what to ask it."""

from clamp2_engine.search.query import DEFAULT_MODE, Query, QueryError, Result, vector_names
from clamp2_engine.search.session import Plan, SearchSession, text_search_fn

__all__ = [
    "DEFAULT_MODE",
    "Plan",
    "Query",
    "QueryError",
    "Result",
    "SearchSession",
    "text_search_fn",
    "vector_names",
]
