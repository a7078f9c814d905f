"""``--filter`` expressions, parsed and checked before any store or model is opened.

``key=value`` (``a,b`` for any of them) and ``key!=value``; all must hold. A plain key (``composer``,
``genres``) or ``metadata.<key>`` is matched case-insensitively through the point's ``keys`` (see
:mod:`clamp2_engine.store.schema`); any other dotted key (``lengths.abc``) is matched exactly, numbers
as numbers too. The result is backend-neutral: each backend turns it into its own filter type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from clamp2_engine.store.schema import KEYS, fold

FILTER_KEY = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")


@dataclass(frozen=True)
class Condition:
    """``key`` (a payload path) matches any of ``values`` (or, for ``negate``, none of them)."""

    field: str  # as the user wrote it, for messages
    key: str
    values: tuple[str, ...] = ()
    numbers: tuple[int, ...] = ()  # also matched as numbers (exact keys only)
    negate: bool = False

    @property
    def folded(self) -> bool:
        """Matched through the case-folded ``keys`` copy."""
        return self.key.startswith(KEYS + ".")

    @property
    def name(self) -> str:
        """The field's name as ``keys`` holds it (for a folded condition)."""
        return self.key.removeprefix(KEYS + ".")


@dataclass(frozen=True)
class Filters:
    """Conditions that must all hold."""

    conditions: tuple[Condition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.conditions)

    def __add__(self, other: Filters | None) -> Filters:
        return Filters(self.conditions + (other.conditions if other else ()))

    @property
    def must(self) -> list[Condition]:
        return [c for c in self.conditions if not c.negate]

    @property
    def must_not(self) -> list[Condition]:
        return [c for c in self.conditions if c.negate]


def exact(key: str, *values: str) -> Filters:
    """``key`` equals one of ``values`` exactly (for the engine's own lookups, e.g. a corpus's units)."""
    return Filters((Condition(key, key, tuple(values)),))


def present(key: str) -> Filters:
    """Points that have payload field ``key`` (not empty)."""
    return Filters((Condition(key, key),))


def parse_filters(exprs: Iterable[str] | Filters | None) -> Filters:
    """The conditions of ``exprs``; ``ValueError`` with a one-line message for a malformed one."""
    if isinstance(exprs, Filters):
        return exprs
    conditions = []
    for expr in exprs or ():
        negate = "!=" in expr
        key, sep, value = expr.partition("!=" if negate else "=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"bad filter {expr!r}: expected key=value or key!=value")
        if not FILTER_KEY.fullmatch(key):
            raise ValueError(
                f"bad filter key {key!r}: a payload field name (letters, digits, _ and -, dotted for nested "
                "fields such as lengths.abc)"
            )
        values = [v.strip() for v in value.split(",") if v.strip()]
        if not values:
            raise ValueError(f"bad filter {expr!r}: no value")
        name = key.removeprefix("metadata.")
        if "." not in name and key != KEYS:
            conditions.append(
                Condition(key, f"{KEYS}.{name}", tuple(dict.fromkeys(map(fold, values))), (), negate)
            )
        else:
            numbers = tuple(int(v) for v in values if v.lstrip("-").isdigit())
            conditions.append(Condition(key, key, tuple(values), numbers, negate))
    return Filters(tuple(conditions))


def translate(
    filters: Filters | None,
    vector: str | None,
    *,
    match_any: Callable[[str, list], Any],
    has_vector: Callable[[str], Any],
    make_filter: Callable[..., Any],
    is_empty: Callable[[str], Any],
) -> Any:
    """``filters`` (and "has vector ``vector``") in a backend's own types, given its constructors;
    ``None`` when there is nothing to filter. A condition without values (:func:`present`) holds for
    points that have the field."""

    def one(c: Condition) -> Any:
        if not c.values and not c.numbers:
            return make_filter(must_not=[is_empty(c.key)])
        conds = [match_any(c.key, list(c.values))] if c.values else []
        if c.numbers:
            conds.append(match_any(c.key, list(c.numbers)))
        return conds[0] if len(conds) == 1 else make_filter(should=conds)

    must = [one(c) for c in (filters.must if filters else [])]
    if vector:
        must.append(has_vector(vector))
    must_not = [one(c) for c in (filters.must_not if filters else [])]
    if not must and not must_not:
        return None
    return make_filter(must=must or None, must_not=must_not or None)
