"""A collection's query models: the towers of the model that made it, loaded once and checked against
the collection's record (its cached ONNX export when there is one). :mod:`clamp2_engine.search.session` searches
with them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from clamp2_engine.loading import LoadOptions
from clamp2_engine.store import Collection, CollectionRecord, check_model

if TYPE_CHECKING:  # pragma: no cover
    from clamp2_engine.pretrained import CLaMP2

Loader = Callable[[LoadOptions, str], "CLaMP2"]


def load_tower(options: LoadOptions, tower: str) -> CLaMP2:
    """The model of ``options`` with one tower (``text`` or ``music``)."""
    from dataclasses import replace

    from clamp2_engine.pretrained import load

    return load(replace(options, towers=(tower,)))


def plan_query_model(
    record: CollectionRecord, tower: str = "text", options: LoadOptions | Mapping[str, Any] | None = None
) -> dict[str, str]:
    """What would encode the collection's ``tower`` queries, without loading it: ``runtime`` (torch,
    onnx), ``precision`` (a CPU's ``auto`` resolved, without importing torch) and ``source`` (the cached
    export, an ONNX folder, or the checkpoint). A cached fp32 export answered a one-core text query in
    about half the time PyTorch fp32 took, with the same hits (docs/benchmarks.md, bench_query)."""
    from clamp2_engine.runtime.onnx_folder import peek_precision

    opts = LoadOptions.of(options).for_collection(record, tower)
    if opts.backend == "onnx":
        cached = not (options and LoadOptions.of(options).onnx_dir)
        source = "cached export" if cached else str(opts.onnx_dir)
        return {
            "runtime": "onnx",
            "precision": peek_precision(opts.onnx_dir or "") or "fp32",
            "source": source,
        }
    precision = opts.precision()  # on a CPU when the device is left to auto (a GPU runs bf16 or fp16)
    return {"runtime": "torch", "precision": precision, "source": str(opts.model or "the collection's model")}


def load_query_model(
    record: CollectionRecord,
    tower: str = "text",
    name: str = "",
    loader: Loader = load_tower,
    **options: Any,
) -> CLaMP2:
    """The model that made the collection with only ``tower`` (``text`` or ``music``) loaded.

    ``model`` / ``text_model`` default to ``$CLAMP2_MODEL`` / ``$CLAMP2_TEXT_MODEL``, then to what the
    collection recorded at ingest time (see :meth:`LoadOptions.for_collection`). Raises
    :class:`ModelMismatchError` for another model.
    """
    clamp = loader(LoadOptions.of(options).for_collection(record, tower), tower)
    check_model(record, clamp.identity, name)
    return clamp


class QueryModels:
    """The query towers of one collection, each loaded (by ``loader``) when first needed."""

    def __init__(
        self,
        collection: Collection,
        options: LoadOptions | Mapping[str, Any] | None = None,
        loader: Loader = load_tower,
    ):
        self.collection, self.options, self.loader = collection, LoadOptions.of(options), loader
        self.loaded: dict[str, CLaMP2] = {}

    def __getitem__(self, tower: str) -> CLaMP2:
        if tower not in self.loaded:
            self.loaded[tower] = load_query_model(
                self.collection.record, tower, self.collection.name, self.loader, **self.options.as_dict()
            )
        return self.loaded[tower]
