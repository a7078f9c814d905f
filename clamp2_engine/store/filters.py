"""``--filter`` expressions, parsed and checked before any store or model is opened.

``key=value`` matches a value containing the words of ``value`` (``composer=bach`` finds "J.S. Bach"),
in any case and with or without accents, through the point's word-indexed ``keys`` (see
:mod:`clamp2_engine.store.fields`); ``key==value`` matches the display value exactly; ``key!=value``
excludes what ``key=value`` matches; ``a,b`` means any of them; all expressions must hold. A key is a
field's name (``composer``, ``genres``; ``genre`` is the same field) or ``metadata.<name>``; any other
dotted key (``lengths.abc``) is matched exactly, numbers as numbers too. The result is backend-neutral:
each backend turns it into its own filter type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from clamp2_engine.store.fields import KEYS, canonical, display_path, fold

FILTER_KEY = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")
MAX_VALUE_CHARS = 200  # of one filter value
MAX_VALUES = 64  # alternatives of one filter


@dataclass(frozen=True)
class Condition:
    """``key`` (a payload path) matches any of ``values`` (or, for ``negate``, none of them): as words of
    the value (``words``), else exactly."""

    field: str  # as the user wrote it, for messages
    key: str
    values: tuple[str, ...] = ()
    numbers: tuple[int, ...] = ()  # also matched as numbers (exact matches only)
    negate: bool = False
    words: bool = False

    @property
    def folded(self) -> bool:
        """Matched through the folded ``keys`` copy."""
        return self.key.startswith(KEYS + ".")

    @property
    def name(self) -> str:
        """The field's canonical name (``genres`` for ``genre`` or ``metadata.genre``)."""
        if self.folded:
            return self.key.removeprefix(KEYS + ".")
        return canonical(self.key.removeprefix("metadata."))

    @property
    def op(self) -> str:
        return "!=" if self.negate else ("=" if self.words else "==")


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
    return Filters(tuple(_condition(expr) for expr in exprs or ()))


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON allows one; a file name's stray byte becomes one)
        return False
    return True


def _condition(expr: str) -> Condition:
    op = next((o for o in ("==", "!=", "=") if o in expr), "")
    key, _sep, value = expr.partition(op) if op else (expr, "", "")
    key, value = key.strip(), value.strip()
    if not op or not key or not value:
        raise ValueError(f"bad filter {expr[:80]!r}: expected key=value, key==value or key!=value")
    if not FILTER_KEY.fullmatch(key) or len(key) > 100:
        raise ValueError(
            f"bad filter key {key[:80]!r}: a payload field name (letters, digits, _ and -, dotted for nested "
            "fields such as lengths.abc)"
        )
    values = [v.strip() for v in value.split(",") if v.strip()]
    if not values:
        raise ValueError(f"bad filter {expr[:80]!r}: no value")
    if not all(_is_text(v) for v in values):
        raise ValueError(
            f"bad filter {key!r}: its value is not valid text (a lone surrogate or a byte not UTF-8)"
        )
    if len(values) > MAX_VALUES or any(len(v) > MAX_VALUE_CHARS for v in values):
        raise ValueError(
            f"filter {key!r} is too long: at most {MAX_VALUES} values of {MAX_VALUE_CHARS} characters"
        )
    name = key.removeprefix("metadata.")
    numbers = tuple(int(v) for v in values if v.lstrip("-").isdigit() and len(v) < 19)
    if "." in name or key == KEYS:  # a nested field: exact
        return Condition(key, key, tuple(values), numbers, op == "!=")
    if op == "==":
        return Condition(key, display_path(name), tuple(values), numbers)
    folded = tuple(dict.fromkeys(f for f in map(fold, values) if f))
    return Condition(key, f"{KEYS}.{canonical(name)}", folded, (), op == "!=", words=True)


def translate(
    filters: Filters | None,
    vector: str | None,
    *,
    match_any: Callable[[str, list], Any],
    match_words: Callable[[str, str], Any],
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
        if c.words:
            conds = [match_words(c.key, v) for v in c.values]
            return conds[0] if len(conds) == 1 else make_filter(should=conds)
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
