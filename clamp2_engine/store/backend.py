"""The small interface each storage engine implements; :class:`~clamp2_engine.store.collection.Collection`
is written against it alone. Two implementations: :mod:`.edge` (Qdrant Edge, embedded) and :mod:`.server`
(qdrant-client: a Qdrant server, its in-memory stand-in, or an old local-mode folder)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from clamp2_engine.store.filters import Filters
from clamp2_engine.store.lexical import SparseVector
from clamp2_engine.store.schema import Point
from clamp2_engine.store.spec import StoreSpec

Payload = bool | list[str]  # all of the payload, none, or these fields


@dataclass
class Search:
    """One query on one vector name: nearest to ``vector`` (dense, or sparse for the lexical vector); or
    recommend (``positives`` / ``negatives``, best score); or, with ``diversity``, maximal marginal
    relevance around ``vector``."""

    using: str
    limit: int
    vector: list[float] | SparseVector | None = None
    positives: list[list[float]] = field(default_factory=list)
    negatives: list[list[float]] = field(default_factory=list)
    diversity: float | None = None  # 0: relevance only ... 1: diversity only
    candidates: int = 100
    filters: Filters | None = None
    offset: int = 0
    with_payload: Payload = True
    hnsw_ef: int | None = None  # HNSW candidates per search: higher is more exact and slower
    oversampling: float | None = None  # a quantized collection: candidates per hit, rescored on originals


Scored = tuple[str, float, dict[str, Any]]  # point id, score, payload
Index = tuple[str, str]  # a payload path and its index kind: "keyword" or "text" (words, folded)


@dataclass(frozen=True)
class Layout:
    """What a new collection is made of: ``dim``-d cosine vectors (every name of ``VECTORS``) kept as
    ``quantization`` says (:mod:`.quantization`), ``lexical`` the sparse ``LEXICAL`` vector (IDF modifier),
    ``indexes`` on the payload."""

    dim: int
    indexes: tuple[Index, ...] = ()
    lexical: bool = True
    quantization: str = "none"


@dataclass(frozen=True)
class Scroll:
    """What a scroll reads: the points matching ``filters``, ``page`` at a time."""

    filters: Filters | None = None
    payload: Payload = True
    vectors: bool = False
    page: int = 1024


class Backend(ABC):
    """A store of named collections."""

    engine: str = ""

    def __init__(self, spec: StoreSpec):
        self.spec = spec

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def create(self, name: str, layout: Layout, meta: dict[str, Any]) -> None:
        """A new collection laid out as ``layout``, with ``meta`` as its record."""

    @abstractmethod
    def add_lexical(self, name: str) -> None:
        """Add the sparse ``LEXICAL`` vector to an existing collection (a no-op when it has it)."""

    @abstractmethod
    def set_index(self, name: str, index: Index) -> None:
        """Index payload path ``index[0]`` as ``index[1]``, replacing an index of another kind."""

    @abstractmethod
    def rewrite(self, name: str, points: Sequence[Point]) -> None:
        """Replace the payloads of existing ``points`` and set the vectors they carry; other vectors are
        left exactly as they are."""

    @abstractmethod
    def drop(self, name: str) -> None: ...

    @abstractmethod
    def read_meta(self, name: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def write_meta(self, name: str, meta: dict[str, Any]) -> None: ...

    @abstractmethod
    def upsert(self, name: str, points: Sequence[Point]) -> None: ...

    @abstractmethod
    def delete(self, name: str, ids: Sequence[str]) -> None: ...

    @abstractmethod
    def count(self, name: str, filters: Filters | None = None, vector: str | None = None) -> int:
        """Points matching ``filters`` (and having vector ``vector``), exactly."""

    def scroll(self, name: str, request: Scroll) -> Iterator[list[Point]]:
        """Every matching point, a page at a time."""
        offset = None
        while True:
            points, offset = self.scroll_page(name, request, offset)
            if points:
                yield points
            if offset is None:
                return

    @abstractmethod
    def scroll_page(self, name: str, request: Scroll, offset: Any) -> tuple[list[Point], Any]:
        """One page from ``offset`` (``None``: the start) and the next page's offset (``None``: the end)."""

    @abstractmethod
    def retrieve(
        self, name: str, ids: Sequence[str], payload: Payload = True, vectors: bool = False
    ) -> list[Point]: ...

    @abstractmethod
    def query(self, name: str, searches: Sequence[Search]) -> list[list[Scored]]:
        """The results of several searches, in one call where the engine allows."""

    @abstractmethod
    def facet(self, name: str, key: str, limit: int = 1000) -> list[tuple[str, int]]:
        """The most common values of an indexed keyword field, with their counts."""

    @abstractmethod
    def info(self, name: str) -> dict[str, Any]:
        """Engine facts: status, segments, indexed vectors, payload indexes, disk bytes where known."""

    @abstractmethod
    def optimize(self, name: str) -> bool:
        """Build the vector (HNSW) and payload indexes now; whether anything changed."""

    def hold(self, name: str) -> None:  # noqa: B027 - optional for engines without per-collection locks
        """Open collection ``name`` now, taking an embedded engine's lock (a second process is told it is
        in use before any work starts); a no-op elsewhere."""

    def holds(self, name: str) -> bool:
        """Whether this process has collection ``name`` open (an embedded engine's lock)."""
        return False

    def release(self, name: str) -> None:  # noqa: B027 - optional for engines without per-collection locks
        """Let other processes open collection ``name`` (an embedded engine's lock); a no-op elsewhere."""

    @abstractmethod
    def close(self) -> None: ...
