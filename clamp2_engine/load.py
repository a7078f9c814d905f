"""How to load a model, as one typed value: :class:`LoadOptions` (what ``--model``, ``--dtype``, ...
say, what a collection's record adds, what the cached ONNX export replaces) and :func:`load`, the one
call from options to a :class:`~clamp2_engine.api.CLaMP2` with the towers asked for."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from clamp2_engine.api import CLaMP2
    from clamp2_engine.store import CollectionRecord

TOWERS = ("music", "text")


@dataclass(frozen=True)
class LoadOptions:
    """A model and how to run it; ``None`` leaves a choice to its default (or to a collection's record)."""

    model: str | None = None  # a known name (clamp2, m3, demo) or a checkpoint file
    text_model: str | None = None  # XLM-R's config and tokenizer: a Hub name or a folder
    backend: str | None = None  # torch (default) or onnx
    device: str | None = None
    dtype: str | None = None  # auto (default: per device and CPU), fp32, bf16, fp16
    onnx_dir: str | None = None  # with backend onnx: a folder written by `export onnx`
    batch_size: int | None = None
    max_batch_tokens: int | None = None
    max_text_length: int | None = None

    @classmethod
    def of(cls, options: LoadOptions | Mapping[str, Any] | None) -> LoadOptions:
        """``options`` as :class:`LoadOptions` (a mapping's unknown keys and ``None`` values are ignored)."""
        if isinstance(options, LoadOptions):
            return options
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in (options or {}).items() if k in names and v is not None}
        return cls(**{k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in given.items()})

    def as_dict(self) -> dict[str, Any]:
        """The options that are set."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def precision(self) -> str:
        """What a model loaded with these options computes at on this machine (``auto`` resolved), or
        ``onnx`` (fixed at export)."""
        if (self.backend or "torch") == "onnx":
            return "onnx"
        from clamp2_engine.runtime.precision import AUTO, auto_dtype
        from clamp2_engine.runtime.torch_runtime import pick_device

        return auto_dtype(pick_device(self.device)) if self.dtype in (None, AUTO) else self.dtype

    def with_env(self) -> LoadOptions:
        """Unset ``model`` / ``text_model`` from ``$CLAMP2_MODEL`` / ``$CLAMP2_TEXT_MODEL``."""
        return replace(
            self,
            model=self.model or os.environ.get("CLAMP2_MODEL") or None,
            text_model=self.text_model or os.environ.get("CLAMP2_TEXT_MODEL") or None,
        )

    def with_record(self, record: CollectionRecord) -> LoadOptions:
        """Unset choices taken from a collection's record: the model that made it, its text model and
        text window."""
        return replace(
            self,
            model=self.model or record.model_source.get("model"),
            text_model=self.text_model or record.model_source.get("text_model"),
            max_text_length=self.max_text_length or record.model.get("max_text_length"),
        )

    def with_cached_export(self, record: CollectionRecord, tower: str) -> LoadOptions:
        """These options set to serve ``tower`` from the cached ONNX export of the collection's model
        (written by ``export onnx`` without ``--out``) when there is one and nothing asks otherwise: no
        backend, model, text model or dtype other than fp32 chosen. ONNX Runtime memory-maps the graph and
        needs no torch or transformers import: a one-shot search starts in about a second, not seven."""
        chosen = self.backend or self.model or self.text_model or self.onnx_dir
        if chosen or self.dtype not in (None, "auto", "fp32"):
            return self
        from clamp2_engine.runtime.onnx_export import cached_export

        folder = cached_export(record.model, tower)
        if folder is None:
            return self
        length = self.max_text_length or record.model.get("max_text_length")
        return replace(self, backend="onnx", onnx_dir=os.fspath(folder), max_text_length=length)

    def for_collection(self, record: CollectionRecord, tower: str) -> LoadOptions:
        """What a collection's query ``tower`` loads: the environment's model, then its cached export or
        its record."""
        options = self.with_env().with_cached_export(record, tower)
        return options if options.backend == "onnx" else options.with_record(record)


def load(
    options: LoadOptions | Mapping[str, Any] | None = None,
    towers: Iterable[str] = TOWERS,
    kind: str | None = None,
) -> CLaMP2:
    """The model ``options`` name, with ``towers`` (``music``, ``text``) loaded."""
    from clamp2_engine.api import CLaMP2

    towers = tuple(towers)
    unknown = set(towers) - set(TOWERS)
    if unknown:
        raise ValueError(f"towers are {' and '.join(TOWERS)}, not {', '.join(sorted(unknown))}")
    opts = LoadOptions.of(options).as_dict()
    model, text_model = opts.pop("model", None), opts.pop("text_model", None)
    return CLaMP2.from_pretrained(
        model, text_model, load_music="music" in towers, load_text="text" in towers, kind=kind, **opts
    )
