"""Why a filtered search found nothing: the condition no piece meets, with the closest values the
collection has."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from clamp2_engine.store.collection import Collection
from clamp2_engine.store.fields import FACETS, KEYS, display_path, fold
from clamp2_engine.store.filters import Condition, Filters, parse_filters, present


def explain_empty(collection: Collection, filters: Filters | Sequence[str] | None) -> str | None:
    """Why ``filters`` match no piece of ``collection``: the first condition none meets (the closest
    values there are), or that no piece meets them all together; ``None`` when the filters are not why."""
    filters = parse_filters(filters)
    if not filters or not collection.count():
        return None
    for cond in filters.must:
        if collection.count(Filters((cond,))):
            continue
        values = [v for v, _n in collection.facet(cond.name)] if cond.name in FACETS else []
        if (cond.folded or cond.key == display_path(cond.name)) and not values:
            if not collection.count(present(f"{KEYS}.{cond.name}")) and not collection.count(
                present(cond.key)
            ):
                return f"no piece has a field {cond.field!r}"
        return f"no piece has {cond.field} {_wanted(cond)}{_closest(cond, values)}"
    return "no piece matches all the filters together" if collection.count(filters) == 0 else None


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
