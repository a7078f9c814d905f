"""The vector store: Qdrant Edge embedded in this process (a folder), or a Qdrant server by URL.

``with open_store() as store: coll = store.collection("music"); coll.upsert(points)``; searching it is
:mod:`clamp2_engine.search`'s.
Only :mod:`.edge` imports ``qdrant_edge`` and only :mod:`.server` imports ``qdrant_client``; everything
else, in and outside this package, speaks :class:`Store` and :class:`Collection`.
"""

from clamp2_engine.errors import (
    CollectionError,
    CollectionNotFoundError,
    ModelMismatchError,
    StoreError,
    StoreInUseError,
    StoreUnreachableError,
)
from clamp2_engine.store.collection import Collection
from clamp2_engine.store.filters import Filters, parse_filters
from clamp2_engine.store.schema import (
    CollectionRecord,
    Hit,
    Point,
    UnitState,
    check_model,
    model_source,
    piece_identity,
    point_id,
)
from clamp2_engine.store.spec import MEMORY, StoreSpec, default_path, redact_url, resolve_store
from clamp2_engine.store.stores import Store, open_store

__all__ = [
    "MEMORY",
    "Collection",
    "CollectionError",
    "CollectionNotFoundError",
    "CollectionRecord",
    "Filters",
    "Hit",
    "ModelMismatchError",
    "Point",
    "Store",
    "StoreError",
    "StoreInUseError",
    "StoreSpec",
    "StoreUnreachableError",
    "UnitState",
    "check_model",
    "default_path",
    "model_source",
    "open_store",
    "parse_filters",
    "piece_identity",
    "point_id",
    "redact_url",
    "resolve_store",
]
