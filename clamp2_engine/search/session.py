"""A search session: one collection and its query models, as a person searches it.

``search``, ``shell``, ``serve`` and ``eval --collection`` all search through :class:`SearchSession`:
it owns the collection's query towers (loaded when first needed, checked against the collection's
record), turns a :class:`Query` into vectors, chooses what the collection can answer (a collection made
before hybrid search is searched semantically, with a notice saying so), and returns a :class:`Result`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp2_engine.errors import CollectionError
from clamp2_engine.loading import LoadOptions
from clamp2_engine.search.explain import explain_empty
from clamp2_engine.search.models import Loader, QueryModels, load_tower
from clamp2_engine.search.query import Query, QueryError, Result, vector_names
from clamp2_engine.search.ranking import find
from clamp2_engine.store import Collection, Store, StoreSpec, open_store

if TYPE_CHECKING:  # pragma: no cover
    from clamp2_engine.pretrained import CLaMP2

NO_WORD_MATCHED = "no word of the query matched any piece: ranked by meaning alone"
Options = LoadOptions | Mapping[str, Any] | None  # the model's load options (default: the collection's)


@dataclass(frozen=True)
class Plan:
    """A query as a collection can answer it (:meth:`SearchSession.plan`), and notices when that differs
    from the ask; planned once, then encoded (``needs_text_vector``) and found."""

    query: Query
    notices: tuple[str, ...] = ()

    @property
    def needs_text_vector(self) -> bool:
        return self.query.needs_text_vector


class SearchSession:
    """A collection with its query towers; ``find(Query)`` runs a search."""

    def __init__(self, collection: Collection, options: Options = None, loader: Loader = load_tower):
        self.collection = collection
        self.models = QueryModels(collection, options, loader)

    @classmethod
    def open(
        cls, store: Store, name: str, options: Options = None, loader: Loader = load_tower
    ) -> SearchSession:
        return cls(store.collection(name), options, loader)

    def model(self, tower: str) -> CLaMP2:
        """The collection's model with the ``text`` or ``music`` tower loaded."""
        return self.models[tower]

    @property
    def lexical(self) -> bool:
        """Whether the collection can be searched by words."""
        return self.collection.record.lexical

    def text_vector(self, text: str) -> np.ndarray:
        """A text query's vector (one short query: few threads, see :func:`query_threads`)."""
        model = self.model("text")
        threads = query_threads() if model.encoder.runtime.backend == "torch" else None
        with _torch_threads(threads):
            return model.encode_text(text)

    def music_vector(self, data: str) -> np.ndarray:
        """A music query's vector, from model input (interleaved ABC or MTF text)."""
        return self.model("music").encode_music(data)

    def plan(self, query: Query) -> Plan:
        """The query as this collection can answer it, and a notice when that differs from the ask."""
        if query.mode == "semantic" or self.lexical:
            if query.mode == "lexical" and not query.text:
                raise QueryError("a lexical search needs a query text")
            return Plan(query, tuple(self._older_words(query)))
        if query.mode == "lexical":
            raise QueryError(
                f"collection {self.collection.name!r} has no lexical index (it was made before hybrid "
                "search): reindex it to search by words"
            )
        notice = (
            f"collection {self.collection.name!r} has no lexical index (it was made before hybrid search): "
            "searched by meaning alone; reindex it to search by words too"
        )
        return Plan(replace(query, mode="semantic"), (notice,))

    def _older_words(self, query: Query) -> list[str]:
        """A notice when the query has words of a script without spaces and the collection's lexical
        index was made before they were segmented."""
        from clamp2_engine.store.lexical import UNSPACED
        from clamp2_engine.store.schema import UNSPACED_WORDS_SCHEMA

        if query.mode == "semantic" or self.collection.record.schema >= UNSPACED_WORDS_SCHEMA:
            return []
        if not UNSPACED.search(query.text or ""):
            return []
        return [
            f"collection {self.collection.name!r} was indexed before words of scripts without spaces were: "
            f"part of such a name finds nothing until `clamp2-engine collections reindex {self.collection.name}`"
        ]

    def find(self, query: Query | Plan, vector: np.ndarray | None = None) -> Result:
        """Run ``query`` (or a :class:`Plan` of it, made once by the caller that encoded its text);
        ``vector`` is its query vector when the caller made it (a music query, or texts batched across
        requests), else the text is encoded here when the mode needs it."""
        plan = query if isinstance(query, Plan) else self.plan(query)
        query, notices = plan.query, list(plan.notices)
        if query.conditions and not self.collection.count(query.conditions):  # said before any model loads
            why = (
                explain_empty(self.collection, query.conditions)
                or "no piece matches all the filters together"
            )
            return Result([], why, query.answered_mode, notices)
        if vector is None and query.needs_text_vector:
            vector = self.text_vector(query.text or "")
        if vector is None and not query.like and not (query.text and query.mode != "semantic"):
            raise QueryError("give a query text, music, or like (point ids)")
        hits, why = find(self.collection, vector, query)
        mode = query.answered_mode
        if mode == "hybrid" and hits and all(h.modality != "hybrid" for h in hits):
            notices.append(NO_WORD_MATCHED)
        if query.modality != "any" and (not hits or mode != "semantic"):
            missing = self.missing_vectors(query.modality)
            if missing and not hits:
                why = why or missing
            elif missing and mode != "lexical":
                notices.append(f"{missing}: matched by words alone")
        return Result(hits, why, mode, notices)

    def missing_vectors(self, modality: str) -> str | None:
        """Why a search of ``modality`` finds nothing by meaning here, when no piece has its vector."""
        if any(self.collection.count(vector=name) for name in vector_names(modality)):
            return None
        kinds = {"text": "no piece has a summary", "abc": "no piece is a score", "mtf": "no piece has MIDI"}
        return f"collection {self.collection.name!r} has no {modality} vectors ({kinds.get(modality, '')})"


def text_search_fn(
    collection: str,
    *,
    modality: str = "abc",
    limit: int = 100,
    store: StoreSpec | None = None,
    filters: Any = None,
    mode: str = "semantic",
    **model_options: Any,
) -> Callable[[list[str]], list[list[str]]]:
    """``fn(texts) -> [[point id, ...] best first, ...]`` searching ``collection`` by text (``mode``:
    semantic by default, since evaluation measures the model).

    Opens the store (default: :func:`clamp2_engine.store.resolve_store`) and loads the text tower once.
    The returned function has ``.collection`` and ``.model`` attributes; ``fn.close()`` releases the store.
    """
    from clamp2_engine.checkpoints import ModelNotFoundError

    base = Query(
        modality=modality, mode=mode, k=limit, filters=tuple(filters or ())
    )  # checked before opening
    opened = open_store(store)
    try:
        session = SearchSession.open(opened, collection, model_options)
        try:
            clamp = session.model("text") if mode != "lexical" else None
        except ModelNotFoundError as exc:
            raise CollectionError(str(exc)) from None
    except BaseException:
        opened.close()
        raise

    def fn(texts: list[str]) -> list[list[str]]:
        if not texts:
            return []
        vectors = clamp.encode_text(list(texts)) if clamp is not None else [None] * len(texts)
        vectors = np.atleast_2d(vectors) if clamp is not None else vectors
        rows = []
        for text, vector in zip(texts, vectors, strict=True):
            hits = session.find(replace(base, text=text if text.strip() else None), vector).hits
            rows.append([h.id for h in hits])
        return rows

    fn.collection, fn.model = session.collection, clamp  # type: ignore[attr-defined]
    fn.close = opened.close  # type: ignore[attr-defined]
    return fn


def query_threads() -> int:
    """Intra-op threads for one short text query: $CLAMP2_QUERY_THREADS, default 1. A query of a few
    tokens gains little from more threads, and loses a lot to them on a busy machine."""
    try:
        return max(1, int(os.environ.get("CLAMP2_QUERY_THREADS", "1")))
    except ValueError:
        raise QueryError("CLAMP2_QUERY_THREADS must be a number of threads") from None


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``n`` for the block (``None``: left alone, e.g. under ONNX)."""
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    if n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
