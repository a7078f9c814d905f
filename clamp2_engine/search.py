"""A collection's query models: the towers of the model that made it, loaded once and checked against
the collection's record (its cached ONNX export when there is one). :mod:`clamp2_engine.session` searches
with them."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clamp2_engine.store import Collection, CollectionRecord, check_model

if TYPE_CHECKING:  # pragma: no cover
    from clamp2_engine.api import CLaMP2

TOWERS = ("text", "music")


def with_record(record: CollectionRecord, options: dict[str, Any]) -> dict[str, Any]:
    """Model options with the unset ones taken from a collection's record (the model that made it, its
    text model and text window)."""
    opts = dict(options)
    opts["model"] = opts.get("model") or record.model_source.get("model")
    opts["text_model"] = opts.get("text_model") or record.model_source.get("text_model")
    opts["max_text_length"] = opts.get("max_text_length") or record.model.get("max_text_length")
    return opts


def with_cached_export(record: CollectionRecord, options: dict[str, Any], tower: str) -> dict[str, Any]:
    """``options`` set to serve ``tower`` from the cached ONNX export of the collection's model (written by
    ``export onnx`` without ``--out``) when there is one and nothing asks otherwise: no backend, model,
    text model or dtype other than fp32 chosen. ONNX Runtime memory-maps the graph and needs no torch or
    transformers import: a one-shot search starts in about a second instead of seven."""
    chosen = any(options.get(k) for k in ("backend", "model", "text_model", "onnx_dir"))
    if chosen or (options.get("dtype") or "fp32") != "fp32":
        return options
    from clamp2_engine.runtime.onnx_runtime import cached_export

    folder = cached_export(record.model, tower)
    if folder is None:
        return options
    length = options.get("max_text_length") or record.model.get("max_text_length")
    return {**options, "backend": "onnx", "onnx_dir": folder, "max_text_length": length}


Loader = Callable[[dict[str, Any], str], "CLaMP2"]


def load_model(options: dict[str, Any]) -> CLaMP2:
    """``CLaMP2.from_pretrained`` with ``options``: ``model``, ``text_model`` and its keywords (unset ones
    left to its defaults)."""
    from clamp2_engine.api import CLaMP2

    opts = {k: v for k, v in options.items() if v is not None}
    return CLaMP2.from_pretrained(opts.pop("model", None), opts.pop("text_model", None), **opts)


def load_tower(options: dict[str, Any], tower: str) -> CLaMP2:
    """:func:`load_model` with one tower (``text`` or ``music``)."""
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}")
    return load_model({**options, "load_music": tower == "music", "load_text": tower == "text"})


def load_query_model(
    record: CollectionRecord,
    tower: str = "text",
    name: str = "",
    loader: Loader = load_tower,
    **options: Any,
) -> CLaMP2:
    """The model that made the collection with only ``tower`` (``text`` or ``music``) loaded.

    ``model`` / ``text_model`` default to ``$CLAMP2_MODEL`` / ``$CLAMP2_TEXT_MODEL``, then to what the
    collection recorded at ingest time. Raises :class:`ModelMismatchError` for another model.
    """
    options["model"] = options.get("model") or os.environ.get("CLAMP2_MODEL")
    options["text_model"] = options.get("text_model") or os.environ.get("CLAMP2_TEXT_MODEL")
    options = with_cached_export(record, options, tower)
    if options.get("backend") != "onnx":
        options = with_record(record, options)
    clamp = loader(options, tower)
    check_model(record, clamp.identity, name)
    return clamp


class QueryModels:
    """The query towers of one collection, each loaded (by ``loader``) when first needed."""

    def __init__(
        self, collection: Collection, options: dict[str, Any] | None = None, loader: Loader = load_tower
    ):
        self.collection, self.options, self.loader = collection, dict(options or {}), loader
        self.loaded: dict[str, CLaMP2] = {}

    def __getitem__(self, tower: str) -> CLaMP2:
        if tower not in self.loaded:
            self.loaded[tower] = load_query_model(
                self.collection.record, tower, self.collection.name, self.loader, **self.options
            )
        return self.loaded[tower]
