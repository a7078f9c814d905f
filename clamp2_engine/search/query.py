"""One search as a person asks for it (:class:`Query`, checked and its filters parsed once, when made),
what a search answers (:class:`Result`), and the vector names a modality looks at."""

from __future__ import annotations

from dataclasses import dataclass, field

from clamp2_engine.errors import CollectionError
from clamp2_engine.store.filters import Filters, parse_filters
from clamp2_engine.store.schema import Hit
from clamp2_engine.types import MODALITIES, MODES, MUSIC_VECTORS, VECTORS, Mode

DEFAULT_MODE: Mode = "hybrid"


class QueryError(CollectionError):
    """A query that cannot be run as asked (no text, a mode the query cannot use, a bad filter ...)."""


def vector_names(modality: str) -> tuple[str, ...]:
    """The vector names a search of ``modality`` looks at (``any``: abc and mtf, each point by its best)."""
    if modality == "any":
        return MUSIC_VECTORS
    if modality not in VECTORS:
        raise QueryError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    return (modality,)


@dataclass(frozen=True)
class Query:
    """One search as a person asks for it. ``text`` is searched by meaning and by words (``mode``:
    hybrid, semantic, lexical); a music query arrives as its vector (:meth:`SearchSession.music_vector`);
    ``like`` / ``unlike`` are point ids. ``weights``: hybrid's (semantic, lexical) fusion weights.
    ``filters`` are ``--filter`` expressions, parsed here, once, into ``conditions``."""

    text: str | None = None
    modality: str = "any"
    mode: str = DEFAULT_MODE
    k: int = 10
    offset: int = 0
    filters: tuple[str, ...] = ()
    like: tuple[str, ...] = ()
    unlike: tuple[str, ...] = ()
    diverse: bool = False
    weights: tuple[float, float] | None = None
    conditions: Filters = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise QueryError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.text is not None and not self.text.strip(" \t\r\n\x00"):
            raise QueryError("the query text is empty")
        if self.diverse and (self.like or self.unlike):
            raise QueryError("diverse works with a query text or music, not with like / unlike")
        vector_names(self.modality)
        try:
            conditions = parse_filters(self.filters)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        object.__setattr__(self, "filters", tuple(self.filters))
        object.__setattr__(self, "conditions", conditions)

    @property
    def needs_text_vector(self) -> bool:
        """Whether the text tower is needed (lexical search and example searches need none)."""
        return bool(self.text) and self.mode != "lexical"

    @property
    def answered_mode(self) -> str:
        """The mode its hits are ranked by: the query's for a text search, else ``semantic``."""
        return self.mode if self.text and not self.like else "semantic"


@dataclass
class Result:
    """Hits, why there are none (a filter no piece meets), the mode used, and notices for the user."""

    hits: list[Hit]
    why: str | None = None
    mode: str = DEFAULT_MODE
    notices: list[str] = field(default_factory=list)
