"""Fast one-shot searches without a manual step: after an ingest, the collection's text tower is exported
once to ONNX into the model cache, where ``search``, ``shell`` and ``serve`` find it by themselves (no
torch or transformers import: a one-shot search starts in about a second). Said in one line; skipped
where the ``[onnx]`` extra is missing, where the export is cached already, or with
``CLAMP2_PREPARE_QUERIES=0``."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

ENV = "CLAMP2_PREPARE_QUERIES"


def prepare_query_model(store: Any, collection: str, say: Callable[[str], None]) -> str | None:
    """Export the text tower of ``collection``'s model to the cache unless it is there; what was done,
    or ``None``. Never fails the command: a failed export is one line, and searches use PyTorch."""
    from clamp2_engine.runtime.onnx_folder import cached_export

    if os.environ.get(ENV, "1") == "0" or not all(
        importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")
    ):
        return None
    try:
        record = store.collection(collection).record
    except Exception:  # noqa: BLE001 - nothing to prepare for a collection that cannot be opened
        return None
    if record.model.get("kind") != "clamp2" or cached_export(record.model, "text") is not None:
        return None
    source = record.model_source
    say("preparing fast searches: the text tower exported to ONNX, once (search, shell and serve use it)")
    from clamp2_engine.exporters.onnx import export_onnx

    try:
        result = export_onnx(
            source.get("model") or record.model.get("name"),
            None,
            source.get("text_model"),
            max_text_length=record.model.get("max_text_length"),
            towers=("text",),  # what a query needs (music by example loads PyTorch, or `export onnx`)
        )
    except Exception as exc:  # noqa: BLE001 - an optional speed-up: searches still work without it
        from clamp2_engine.errors import first_line

        say(f"fast searches not prepared ({first_line(exc, 200)}); searches load PyTorch")
        return None
    return os.fspath(result.out)
