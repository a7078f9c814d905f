"""The one loader: a typed :class:`LoadOptions` (what ``--model``, ``--dtype``, ... say, what a collection's
record adds, what the cached ONNX export replaces) and :func:`build`, the one path from options to an
:class:`~clamp2_engine.encoder.Encoder` and its :class:`~clamp2_engine.identity.ModelIdentity`, for PyTorch
(:func:`load_torch`: resolve the file, shipped model or Hub -> ``weights_only`` load -> kind -> the towers
asked for -> tokenizer and lengths checked; also what the ONNX exporter loads) and for ONNX Runtime (an
export folder). :func:`clamp2_engine.pretrained.load` wraps it as a ``CLaMP2``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clamp2_engine.errors import about
from clamp2_engine.identity import ModelIdentity
from clamp2_engine.music.text import MAX_TEXT_LENGTH

if TYPE_CHECKING:  # pragma: no cover
    from clamp2_engine.encoder import Encoder
    from clamp2_engine.runtime.onnx_runtime import Provider
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
    towers: tuple[str, ...] = TOWERS  # what to load: music, text or both
    kind: str | None = None  # the kind the checkpoint must be (clamp2, m3); None: whatever it is
    providers: tuple[Provider, ...] | None = None  # with backend onnx: ONNX Runtime's providers
    threads: int | None = None  # with backend onnx: intra-op threads (default: ONNX Runtime's)

    def __post_init__(self) -> None:  # the one place the options are checked
        from clamp2_engine.runtime.precision import check
        from clamp2_engine.types import BACKENDS, KINDS

        if self.backend not in (None, *BACKENDS):
            raise about(
                ValueError(f"unknown backend {self.backend!r}; choose {' or '.join(BACKENDS)}"), "backend"
            )
        check(self.dtype)
        if self.backend == "onnx" and self.dtype not in (None, "auto", "fp32"):
            raise about(
                ValueError(
                    "a dtype applies to the torch backend; an ONNX export's precision is set when it is exported"
                ),
                "dtype",
            )
        towers = tuple(self.towers)
        if not towers or set(towers) - set(TOWERS):
            raise ValueError(f"towers are {' and '.join(TOWERS)}, not {', '.join(towers) or 'none'}")
        object.__setattr__(self, "towers", towers)
        if self.kind not in (None, *KINDS):
            raise about(ValueError(f"unknown kind {self.kind!r}; choose {' or '.join(KINDS)}"), "kind")

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
        """What a model loaded with these options computes at (``auto`` resolved by the one resolver,
        without importing torch; a device left to ``auto`` is taken as this CPU), or ``onnx`` (fixed at
        export)."""
        if (self.backend or "torch") == "onnx":
            return "onnx"
        from clamp2_engine.runtime.precision import resolve

        return resolve(self.dtype, self.device if self.device not in (None, "auto") else "cpu")

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
        from clamp2_engine.runtime.onnx_folder import cached_export

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


DEFAULT_MAX_TEXT_LENGTH = MAX_TEXT_LENGTH  # the reference's MAX_TEXT_LENGTH


@dataclass
class LoadedModel:
    """A built module (``CLaMP2Model`` or ``M3PatchEncoder``), what it is, and its tokenizer (text tower)."""

    module: Any
    identity: ModelIdentity
    tokenizer: Any = None


def model_name(spec: str | os.PathLike | None, path: Path) -> str:
    """The model's name when ``spec`` is one (a known name, an ``hf:`` reference), else the file's name."""
    from clamp2_engine.checkpoints import default_model, is_model_name

    spec = default_model() if spec is None else spec
    return os.fspath(spec) if is_model_name(spec) else path.name


def recorded_text_model(checkpoint: dict[str, Any], model: str | os.PathLike | None) -> str:
    """The text model a checkpoint written by ``train`` names (its folder, when still there, or a Hub
    name), else the one a known ``model`` goes with, else XLM-R base (``$CLAMP2_TEXT_MODEL`` first)."""
    from clamp2_engine.checkpoints import default_text_model

    recorded = checkpoint.get("text_model")
    if not os.environ.get("CLAMP2_TEXT_MODEL") and isinstance(recorded, str) and recorded:
        if Path(recorded).is_dir() or not os.path.isabs(recorded):
            return recorded
    return default_text_model(model)


def recorded_int(checkpoint: dict[str, Any], key: str) -> int | None:
    """An integer setting a checkpoint written by this project records beside the weights (else None)."""
    value = checkpoint.get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def load_torch(
    model: str | os.PathLike | None = None,
    text_model: str | os.PathLike | None = None,
    *,
    kind: str | None = None,
    load_music: bool = True,
    load_text: bool = True,
    max_text_length: int | None = None,
    attn_implementation: str = "sdpa",
) -> LoadedModel:
    """Load a CLaMP 2 or M3 checkpoint for inference.

    ``max_text_length`` (text tokens per window) defaults to what the checkpoint records (checkpoints
    written by ``clamp2-engine train`` do), else the reference's 128. ``text_model`` defaults to the text
    model a known checkpoint goes with (``$CLAMP2_TEXT_MODEL`` first).
    """
    from clamp2_engine.checkpoints import (
        detect_kind,
        load_checkpoint,
        resolve_checkpoint,
        sha256_file,
    )
    from clamp2_engine.models.factory import build_clamp2, build_m3_encoder, load_text_assets

    path = resolve_checkpoint(model)
    checkpoint = load_checkpoint(path)
    state = checkpoint["model"]
    found = detect_kind(state)
    if kind and kind != found:
        raise ValueError(f"{path.name} is a {found} checkpoint, not {kind}")
    name, sha = model_name(model, path), sha256_file(path)
    if found == "m3":
        module = build_m3_encoder(state, attn_implementation)
        c = module.config
        identity = ModelIdentity(
            name=name,
            kind="m3",
            checkpoint_sha256=sha,
            embed_dim=c.hidden_size,
            music_hidden_size=c.hidden_size,
            text_hidden_size=None,
            patch_size=c.patch_size,
            patch_length=c.patch_length,
            max_text_length=None,
            text_model=None,
        )
        return LoadedModel(module, identity)
    length = max_text_length or recorded_int(checkpoint, "max_text_length") or DEFAULT_MAX_TEXT_LENGTH
    text_spec = hf_config = tokenizer = None
    if load_text:
        text_spec = (
            os.fspath(text_model) if text_model is not None else recorded_text_model(checkpoint, model)
        )
        hf_config, tokenizer = load_text_assets(text_spec)
    module = build_clamp2(
        state,
        hf_config,
        load_text=load_text,
        load_music=load_music,
        max_text_length=length,
        attn_implementation=attn_implementation,
    )
    del state, checkpoint
    cfg = module.config
    if tokenizer is not None and len(tokenizer) > cfg.text.vocab_size:
        raise about(
            ValueError(
                f"tokenizer {text_spec!r} has {len(tokenizer)} tokens but the checkpoint's text tower "
                f"has {cfg.text.vocab_size}: the wrong text model?"
            ),
            "text_model",
        )
    if length + 2 > cfg.text.max_position_embeddings:
        raise about(
            ValueError(
                f"a text window of {length} tokens does not fit the text tower's "
                f"{cfg.text.max_position_embeddings} position embeddings (at most "
                f"{cfg.text.max_position_embeddings - 2})"
            ),
            "max_text_length",
        )
    identity = ModelIdentity(
        name=name,
        kind="clamp2",
        checkpoint_sha256=sha,
        embed_dim=cfg.embed_dim,
        music_hidden_size=cfg.music.hidden_size,
        text_hidden_size=cfg.text.hidden_size,
        patch_size=cfg.music.patch_size,
        patch_length=cfg.music.patch_length,
        max_text_length=length,
        text_model=os.path.basename(os.path.normpath(text_spec)) if text_spec else None,
    )
    return LoadedModel(module, identity, tokenizer)


def build(options: LoadOptions | Mapping[str, Any] | None = None) -> tuple[Encoder, ModelIdentity]:
    """``(encoder, identity)`` for ``options``: a checkpoint run by PyTorch at the resolved precision, or
    an export folder run by ONNX Runtime (its precision fixed at export)."""
    from clamp2_engine.encoder import Encoder

    o = LoadOptions.of(options)
    if (o.backend or "torch") == "onnx":
        from clamp2_engine.runtime.onnx_loader import open_export

        runtime, tokenizer, identity = open_export(
            o.onnx_dir,
            model=o.model,
            text_model=o.text_model,
            device=o.device,
            towers=o.towers,
            kind=o.kind,
            providers=o.providers,
            threads=o.threads,
            max_text_length=o.max_text_length,
        )
    else:
        from clamp2_engine.checkpoints import resolve_checkpoint

        resolve_checkpoint(o.model)  # a checkpoint that is not there is said before torch is imported
        from clamp2_engine.runtime.torch_runtime import TorchRuntime

        loaded = load_torch(
            o.model,
            o.text_model,
            kind=o.kind,
            load_music="music" in o.towers,
            load_text="text" in o.towers,
            max_text_length=o.max_text_length,
        )
        runtime, tokenizer, identity = (
            TorchRuntime(loaded.module, o.device, o.dtype),
            loaded.tokenizer,
            loaded.identity,
        )
    encoder = Encoder.from_identity(
        runtime, tokenizer, identity, batch_size=o.batch_size, max_batch_tokens=o.max_batch_tokens
    )
    return encoder, identity
