"""Build M3 / CLaMP 2 modules from a reference checkpoint and the XLM-R config + tokenizer."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clamp2_engine.checkpoints import (
    CLAMP2_PREFIX,
    M3_PREFIX,
    CheckpointError,
    HubUnreachableError,
    ModelNotFoundError,
    cache_first,
    default_text_model,
)
from clamp2_engine.errors import about, first_line
from clamp2_engine.models.clamp2 import CLaMP2Model
from clamp2_engine.models.config import CLaMP2Config, M3Config, TextConfig
from clamp2_engine.models.m3 import M3Model, M3PatchEncoder
from clamp2_engine.music.patches import ALPHABET
from clamp2_engine.music.text import MAX_TEXT_LENGTH

IGNORABLE = (".pooler.",)  # reference checkpoints carry BERT/XLM-R poolers that inference never uses


# --- sizes from a checkpoint's tensor shapes -----------------------------------------------------


def _count_layers(state_dict: dict[str, torch.Tensor], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in state_dict if (m := pat.match(k))}
    return max(idx) + 1 if idx else 0


def _shape(state_dict: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(f"checkpoint lacks {key}")
    return tuple(state_dict[key].shape)


def infer_m3_config(
    state_dict: dict[str, torch.Tensor],
    prefix: str = M3_PREFIX,
    decoder_prefix: str | None = "decoder.base.transformer.h.",
) -> M3Config:
    """M3 sizes from tensor shapes under ``prefix`` (``encoder.`` or ``music_model.``)."""
    hidden, features = _shape(state_dict, prefix + "patch_embedding.weight")
    alphabet = ALPHABET
    if features % alphabet:
        raise CheckpointError(f"patch embedding width {features} is not a multiple of {alphabet}")
    positions, _ = _shape(state_dict, prefix + "base.embeddings.position_embeddings.weight")
    types = _shape(state_dict, prefix + "base.embeddings.token_type_embeddings.weight")[0]
    layers = _count_layers(state_dict, prefix + "base.encoder.layer.")
    dec = _count_layers(state_dict, decoder_prefix) if decoder_prefix else 0
    return M3Config(
        hidden_size=hidden,
        num_layers=layers,
        patch_size=features // alphabet,
        patch_length=positions,
        decoder_layers=dec or 3,
        alphabet=alphabet,
        type_vocab_size=types,
    )


def infer_text_config(
    state_dict: dict[str, torch.Tensor], hf_config: Any = None, prefix: str = "text_model."
) -> TextConfig:
    """XLM-R sizes from tensor shapes; head count and pad id from ``hf_config`` when consistent."""
    vocab, hidden = _shape(state_dict, prefix + "embeddings.word_embeddings.weight")
    positions = _shape(state_dict, prefix + "embeddings.position_embeddings.weight")[0]
    types = _shape(state_dict, prefix + "embeddings.token_type_embeddings.weight")[0]
    inter = _shape(state_dict, prefix + "encoder.layer.0.intermediate.dense.weight")[0]
    layers = _count_layers(state_dict, prefix + "encoder.layer.")
    heads = getattr(hf_config, "num_attention_heads", None)
    if not heads or getattr(hf_config, "hidden_size", None) != hidden or hidden % heads:
        heads = max(1, hidden // 64)
    pad = getattr(hf_config, "pad_token_id", 1)
    eps = getattr(hf_config, "layer_norm_eps", 1e-5)
    return TextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=inter,
        max_position_embeddings=positions,
        type_vocab_size=types,
        pad_token_id=1 if pad is None else pad,
        layer_norm_eps=eps,
    )


def infer_clamp2_config(
    state_dict: dict[str, torch.Tensor], hf_text_config: Any = None, max_text_length: int = MAX_TEXT_LENGTH
) -> CLaMP2Config:
    """CLaMP 2 sizes from tensor shapes (the music tower under ``music_model.``, the text tower, the
    projections)."""
    music = infer_m3_config(state_dict, CLAMP2_PREFIX, decoder_prefix=None)
    text = infer_text_config(state_dict, hf_text_config)
    embed_dim = _shape(state_dict, "music_proj.weight")[0]
    return CLaMP2Config(music=music, text=text, embed_dim=embed_dim, max_text_length=max_text_length)


def load_text_assets(spec: str | os.PathLike | None = None) -> tuple[Any, Any]:
    """The XLM-R ``(config, tokenizer)`` from a local folder or a Hub name (config and tokenizer only).

    A Hub name is read from the local cache without any request when the Hub is out of reach.
    """
    from transformers import AutoConfig, AutoTokenizer

    spec = os.fspath(spec) if spec is not None else default_text_model()
    local = Path(spec).expanduser()
    if local.exists() and not local.is_dir():
        raise about(
            ModelNotFoundError(
                f"text model {spec!r} is a file; give the folder holding config.json and the tokenizer files"
            ),
            "text_model",
        )

    def load(local_only: bool) -> tuple[Any, Any]:
        return (
            AutoConfig.from_pretrained(spec, local_files_only=local_only),
            AutoTokenizer.from_pretrained(spec, local_files_only=local_only),
        )

    try:
        config, tokenizer = load(False) if local.is_dir() else cache_first(load)
    except Exception as exc:
        if isinstance(exc, HubUnreachableError):
            raise about(
                ModelNotFoundError(
                    f"text model {spec!r} (config and tokenizer) is not in the local Hugging Face cache and the Hub "
                    "is out of reach (offline); use a local folder holding them, or try "
                    "`clamp2-engine demo`"
                ),
                "text_model",
            ) from None
        raise about(
            ModelNotFoundError(
                f"could not load the text model config and tokenizer {spec!r} ({type(exc).__name__}: "
                f"{first_line(exc)}); use a local folder holding them (e.g. "
                "FacebookAI/xlm-roberta-base's config.json and tokenizer files)"
            ),
            "text_model",
        ) from None
    return config, tokenizer


def _finite(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` holds no NaN or infinity: its sum is finite exactly then (one pass, no mask;
    summed in fp32, which real weights cannot overflow). 20x cheaper than ``isfinite().all()``."""
    return math.isfinite(float(tensor.sum(dtype=torch.float32)))


def load_weights(
    module: nn.Module,
    state_dict: dict[str, torch.Tensor],
    prefix: str = "",
    ignore_unexpected: tuple[str, ...] = IGNORABLE,
) -> None:
    """Copy ``state_dict`` (keys under ``prefix``) into ``module``; missing or misshapen keys are errors."""
    own = module.state_dict()
    sub = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    missing = sorted(k for k in own if k not in sub and not any(s in "." + k for s in ignore_unexpected))
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise CheckpointError(
            f"checkpoint lacks {len(missing)} weight(s) the model needs: "
            f"{', '.join(prefix + k for k in missing[:5])}{more}"
        )
    broken = [k for k, v in sub.items() if k in own and v.is_floating_point() and not _finite(v)]
    if broken:
        more = f" (+{len(broken) - 1} more)" if len(broken) > 1 else ""
        raise CheckpointError(
            f"weight {prefix + broken[0]}{more} holds NaN or infinite values: the checkpoint is "
            "broken (a diverged training run?)"
        )
    bad = [
        (k, tuple(v.shape), tuple(own[k].shape))
        for k, v in sub.items()
        if k in own and v.shape != own[k].shape
    ]
    if bad:
        k, got, want = bad[0]
        raise CheckpointError(
            f"weight {prefix + k} has shape {got}, the model expects {want}"
            + (f" (+{len(bad) - 1} more)" if len(bad) > 1 else "")
        )
    module.load_state_dict({k: v for k, v in sub.items() if k in own}, strict=False)
    params = dict(module.named_parameters())
    with torch.no_grad():  # modules are built uninitialised (see `uninitialised`): an absent pooler is zeros
        for k in own.keys() - sub.keys():
            if k in params:
                params[k].zero_()


def uninitialised():
    """A context in which modules are built without random initialisation (``transformers``' public
    ``no_init_weights``): every weight is loaded from the checkpoint next, and initialising 370M
    parameters first costs about 3 s on a CPU."""
    from transformers.initialization import no_init_weights

    return no_init_weights()


def build_clamp2(
    state_dict: dict[str, torch.Tensor],
    hf_text_config: Any = None,
    *,
    load_text: bool = True,
    load_music: bool = True,
    max_text_length: int = MAX_TEXT_LENGTH,
    attn_implementation: str | None = "sdpa",
) -> CLaMP2Model:
    """A CLaMP 2 module (one or both towers) filled from a reference state dict."""
    config = infer_clamp2_config(state_dict, hf_text_config if load_text else None, max_text_length)
    if not load_text:
        config = CLaMP2Config(
            music=config.music, text=config.text, embed_dim=config.embed_dim, max_text_length=max_text_length
        )
    with uninitialised():
        model = CLaMP2Model(
            config, load_text=load_text, load_music=load_music, attn_implementation=attn_implementation
        )
    if load_text:
        load_weights(model.text_model, state_dict, "text_model.")
        load_weights(model.text_proj, state_dict, "text_proj.")
    if load_music:
        load_weights(model.music_model, state_dict, CLAMP2_PREFIX)
        load_weights(model.music_proj, state_dict, "music_proj.")
    return model.eval()


def build_m3_encoder(
    state_dict: dict[str, torch.Tensor], attn_implementation: str | None = "sdpa"
) -> M3PatchEncoder:
    """The M3 encoder alone (feature extraction) from an M3 state dict."""
    config = infer_m3_config(state_dict)
    with uninitialised():
        encoder = M3PatchEncoder(config, attn_implementation)
    load_weights(encoder, state_dict, "encoder.")
    return encoder.eval()


def build_m3(
    state_dict: dict[str, torch.Tensor] | None = None,
    config: M3Config | None = None,
    attn_implementation: str | None = "sdpa",
) -> M3Model:
    """The full M3 (encoder + decoder) for training, from a state dict or a fresh config."""
    if state_dict is None:
        return M3Model(config or M3Config(), attn_implementation)
    model = M3Model(config or infer_m3_config(state_dict), attn_implementation)
    load_weights(model, state_dict)
    return model
