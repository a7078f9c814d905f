"""One path from a model name or checkpoint file to a PyTorch module, its identity and its tokenizer.

``CLaMP2.from_pretrained`` (torch backend) and the ONNX exporter both load through :func:`load_torch`:
resolve (file, shipped model or Hub) -> load (``weights_only``) -> detect kind -> build the towers asked for
-> check tokenizer and lengths -> :class:`~clamp2_engine.identity.ModelIdentity`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clamp2_engine.errors import about
from clamp2_engine.identity import ModelIdentity
from clamp2_engine.music.text import MAX_TEXT_LENGTH

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


def torch_encoder(
    model: str | os.PathLike | None,
    text_model: str | os.PathLike | None,
    *,
    device: str | None = None,
    dtype: str | None = "auto",
    load_music: bool = True,
    load_text: bool = True,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    kind: str | None = None,
    max_text_length: int | None = None,
    onnx_dir: str | os.PathLike | None = None,
) -> tuple[Any, ModelIdentity]:
    """``(encoder, identity)`` for a checkpoint run by PyTorch (``onnx_dir`` is not used)."""
    from clamp2_engine.checkpoints import resolve_checkpoint

    resolve_checkpoint(model)  # a checkpoint that is not there is said before torch is imported
    from clamp2_engine.encoder import Encoder
    from clamp2_engine.runtime.torch_runtime import TorchRuntime

    loaded = load_torch(
        model,
        text_model,
        kind=kind,
        load_music=load_music,
        load_text=load_text,
        max_text_length=max_text_length,
    )
    runtime = TorchRuntime(loaded.module, device, dtype)
    encoder = Encoder.from_identity(
        runtime, loaded.tokenizer, loaded.identity, batch_size=batch_size, max_batch_tokens=max_batch_tokens
    )
    return encoder, loaded.identity


def onnx_encoder(
    model: str | os.PathLike | None,
    text_model: str | os.PathLike | None,
    *,
    onnx_dir: str | os.PathLike | None = None,
    dtype: str | None = "auto",
    **options: Any,
) -> tuple[Any, ModelIdentity]:
    """``(encoder, identity)`` for graphs written by ``export onnx`` (their precision is fixed at export)."""
    from clamp2_engine.runtime.onnx_loader import onnx_encoder as build

    if dtype not in (None, "auto", "fp32"):
        raise about(
            ValueError(
                "a dtype applies to the torch backend; an ONNX export's precision is set when it is exported"
            ),
            "dtype",
        )
    return build(onnx_dir, model=model, text_model=text_model, **options)


BACKEND_LOADERS = {"torch": torch_encoder, "onnx": onnx_encoder}


def load_encoder(
    backend: str = "torch",
    model: str | os.PathLike | None = None,
    text_model: str | os.PathLike | None = None,
    **options: Any,
) -> tuple[Any, ModelIdentity]:
    """The one entry point from a model (name, checkpoint or ONNX export) to ``(encoder, identity)``."""
    loader = BACKEND_LOADERS.get(backend)
    if loader is None:
        raise ValueError(f"unknown backend {backend!r}; choose {' or '.join(BACKEND_LOADERS)}")
    return loader(model, text_model, **options)
