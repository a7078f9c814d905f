"""Models to train: fresh (sizes from options), from released or earlier weights, or from a run's latest.

Fresh weights follow the reference: transformers' own initialisation for BERT / XLM-R / GPT-2 and
``normal(0, 0.02)`` for the patch embedding and both projections.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clamp2_engine.checkpoints import (
    CheckpointError,
    ModelNotFoundError,
    detect_kind,
    load_checkpoint,
    resolve_checkpoint,
)
from clamp2_engine.errors import about, first_line
from clamp2_engine.loading import recorded_int
from clamp2_engine.models import CLaMP2Config, CLaMP2Model, M3Config, M3Model, TextConfig
from clamp2_engine.models.factory import build_clamp2, build_m3, infer_m3_config, load_weights
from clamp2_engine.music.text import MAX_TEXT_LENGTH
from clamp2_engine.train.config import CLaMP2Options, M3Options

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
UNUSED = (".pooler.", "base.embeddings.word_embeddings.")  # never reach a loss: poolers, M3's 1-row vocab


def load_state(spec: str | os.PathLike, kind: str) -> dict[str, torch.Tensor]:
    """A checkpoint's model state (path or registry name) that must be of ``kind``."""
    state = load_checkpoint(resolve_checkpoint(spec))["model"]
    found = detect_kind(state)
    if found != kind:
        raise CheckpointError(f"{spec} is a {found} checkpoint; a {kind} checkpoint is needed here")
    return state


def m3_config(
    hidden: int | None,
    layers: int | None,
    patch_size: int | None,
    patch_length: int | None,
    decoder_layers: int | None = None,
    base: M3Config | None = None,
) -> M3Config:
    """Sizes from options over ``base`` (a checkpoint's, which the options must then agree with)."""
    if base is not None:
        given = {
            "hidden_size": hidden,
            "num_layers": layers,
            "patch_size": patch_size,
            "patch_length": patch_length,
            "decoder_layers": decoder_layers,
        }
        clash = [
            f"{k}={v} (checkpoint: {getattr(base, k)})"
            for k, v in given.items()
            if v is not None and v != getattr(base, k)
        ]
        if clash:
            raise ValueError("size options disagree with the loaded weights: " + ", ".join(clash))
        return base
    cfg = M3Config(
        hidden_size=hidden or 768,
        num_layers=layers or 12,
        patch_size=patch_size or 64,
        patch_length=patch_length or 512,
        decoder_layers=decoder_layers or 3,
    )
    if cfg.hidden_size % cfg.num_heads or min(cfg.num_layers, cfg.decoder_layers, cfg.patch_size) < 1:
        raise ValueError(
            f"hidden size {cfg.hidden_size} must split into heads of 64 (a multiple of 64, or "
            "below 128); layer counts and sizes must be positive"
        )
    if cfg.patch_size < 3:
        raise ValueError("patch size must be at least 3 (bos, one character, eos)")
    return cfg


def init_fresh(model: nn.Module) -> None:
    """The reference's ``normal(0, 0.02)`` for patch embeddings and projections (the rest: transformers')."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.split(".")[-1] in (
            "patch_embedding",
            "text_proj",
            "music_proj",
        ):
            nn.init.normal_(module.weight, std=0.02)


def set_dropout(model: nn.Module, p: float) -> None:
    """Set every dropout probability (attention included: transformers reads ``nn.Dropout.p``)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def freeze_unused(model: nn.Module) -> list[str]:
    """Parameters that never get a gradient (poolers, M3's one-row word embedding) stop requiring one,
    so DDP needs no unused-parameter search; they stay in the model and in the checkpoints."""
    frozen = []
    for name, param in model.named_parameters():
        if any(u in name for u in UNUSED):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def build_m3_model(opts: M3Options, state: dict[str, torch.Tensor] | None = None) -> M3Model:
    """From ``state`` (resume), ``opts.init`` (released or earlier weights) or fresh."""
    if state is None and opts.init:
        state = load_state(opts.init, "m3")
    sizes = (opts.hidden_size, opts.num_layers, opts.patch_size, opts.patch_length, opts.decoder_layers)
    if state is not None:
        model = build_m3(state, m3_config(*sizes, base=infer_m3_config(state))).train()
    else:
        model = M3Model(m3_config(*sizes))
        init_fresh(model)
    model.decoder.base.loss_type = "ForCausalLM"  # the decoder's loss, named (transformers warns otherwise)
    return model


def _has_weights(spec: str) -> bool:
    path = Path(spec).expanduser()
    if path.is_dir():
        return any((path / f).is_file() for f in WEIGHT_FILES)
    return not path.exists()  # a Hub name: its weights are fetched like the reference's from_pretrained


def text_config(hf_config: Any, overrides: dict[str, int]) -> TextConfig:
    """The text tower's shape: the XLM-R config with size overrides; heads follow the checkpoint loader's
    rule (the config's when the hidden size is the config's, else hidden // 64)."""
    hidden = overrides.get("hidden_size", hf_config.hidden_size)
    heads = hf_config.num_attention_heads if hidden == hf_config.hidden_size else max(1, hidden // 64)
    if hidden % heads:
        raise ValueError(
            f"text hidden size {hidden} must split into heads of 64 (a multiple of 64, or below 128)"
        )
    pad = getattr(hf_config, "pad_token_id", 1)
    return TextConfig(
        vocab_size=hf_config.vocab_size,
        hidden_size=hidden,
        num_layers=overrides.get("num_hidden_layers", hf_config.num_hidden_layers),
        num_heads=heads,
        intermediate_size=overrides.get(
            "intermediate_size",
            hf_config.intermediate_size if hidden == hf_config.hidden_size else 4 * hidden,
        ),
        max_position_embeddings=hf_config.max_position_embeddings,
        type_vocab_size=hf_config.type_vocab_size,
        pad_token_id=1 if pad is None else pad,
        layer_norm_eps=getattr(hf_config, "layer_norm_eps", 1e-5),
    )


def _pretrained_text(spec: str) -> nn.Module:
    from transformers import XLMRobertaModel

    try:
        return XLMRobertaModel.from_pretrained(spec, attn_implementation="sdpa")
    except Exception as exc:  # offline, no weights, wrong architecture
        reason = first_line(exc, 200)
        raise about(
            ModelNotFoundError(
                f"could not load text model weights from {spec!r} ({type(exc).__name__}: "
                f"{reason}); give a local text model folder, or sizes for a random text tower"
            ),
            "text_model",
        ) from None


def check_text_sizes(opts: CLaMP2Options, config: CLaMP2Config) -> None:
    """Size options given with loaded weights (``--init``, ``--resume``) must agree with them."""
    t = config.text
    given = {
        "text hidden": (opts.text_hidden_size, t.hidden_size),
        "text layers": (opts.text_layers, t.num_layers),
        "text intermediate": (opts.text_intermediate, t.intermediate_size),
        "embed dim": (opts.embed_dim, config.embed_dim),
    }
    clash = [f"{k}={v} (checkpoint: {c})" for k, (v, c) in given.items() if v is not None and v != c]
    if clash:
        raise ValueError("size options disagree with the loaded weights: " + ", ".join(clash))


def build_clamp2_model(
    opts: CLaMP2Options, hf_config: Any, text_spec: str, state: dict[str, torch.Tensor] | None = None
) -> tuple[CLaMP2Model, dict[str, str]]:
    """The model and where each part came from (``{"text": ..., "music": ...}``)."""
    music_sizes = (opts.hidden_size, opts.num_layers, opts.patch_size, opts.patch_length)
    if state is not None or opts.init:
        origin = "resumed" if state is not None else str(opts.init)
        window = opts.max_text_length
        if state is None:
            checkpoint = load_checkpoint(resolve_checkpoint(opts.init))
            state, window = checkpoint["model"], window or recorded_int(checkpoint, "max_text_length")
            if detect_kind(state) != "clamp2":
                raise CheckpointError(f"{opts.init} is not a CLaMP 2 checkpoint")
        model = build_clamp2(state, hf_config, max_text_length=window or MAX_TEXT_LENGTH)
        m3_config(*music_sizes, base=model.config.music)
        check_text_sizes(opts, model.config)
        return model.train(), {"text": origin, "music": origin}
    m3_state = load_state(opts.m3, "m3") if opts.m3 else None
    base = infer_m3_config(m3_state) if m3_state is not None else None
    music = m3_config(*music_sizes, base=base)
    if base is not None:  # the decoder is not part of CLaMP 2; keep its default so configs compare equal
        music = dataclasses.replace(music, decoder_layers=M3Config.decoder_layers, alphabet=M3Config.alphabet)
    overrides = opts.text_overrides()
    pretrained = None if overrides or not _has_weights(text_spec) else _pretrained_text(text_spec)
    text = text_config(pretrained.config if pretrained is not None else hf_config, overrides)
    model = CLaMP2Model(
        CLaMP2Config(
            music=music,
            text=text,
            embed_dim=opts.embed_dim or 768,
            max_text_length=opts.max_text_length or MAX_TEXT_LENGTH,
        )
    )
    init_fresh(model)
    origin = {
        "text": f"pretrained {text_spec}" if pretrained is not None else "random",
        "music": f"M3 {opts.m3}" if m3_state is not None else "random",
    }
    if pretrained is not None:
        load_weights(model.text_model, pretrained.state_dict())
    if m3_state is not None:
        load_weights(model.music_model, m3_state, "encoder.")
    return model.train(), origin
