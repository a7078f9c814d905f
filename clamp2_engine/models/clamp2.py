"""CLaMP 2: XLM-R text tower and M3 music tower, each with masked mean pooling and a projection."""

from __future__ import annotations

import torch
from torch import nn
from transformers import XLMRobertaConfig, XLMRobertaModel

from clamp2_engine.models.config import CLaMP2Config, TextConfig
from clamp2_engine.models.m3 import M3PatchEncoder


def text_model_config(text: TextConfig, attn_implementation: str | None = "sdpa") -> XLMRobertaConfig:
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    return XLMRobertaConfig(
        vocab_size=text.vocab_size,
        hidden_size=text.hidden_size,
        num_hidden_layers=text.num_layers,
        num_attention_heads=text.num_heads,
        intermediate_size=text.intermediate_size,
        max_position_embeddings=text.max_position_embeddings,
        type_vocab_size=text.type_vocab_size,
        pad_token_id=text.pad_token_id,
        layer_norm_eps=text.layer_norm_eps,
        **kw,
    )


def masked_mean(hidden: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` ``[B, L, H]`` over the positions where ``masks`` ``[B, L]`` is 1."""
    m = masks.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1)


class CLaMP2Model(nn.Module):
    """Keys ``text_model.*``, ``text_proj.*``, ``music_model.*``, ``music_proj.*`` as in the reference.

    ``load_text`` / ``load_music`` build one tower only (search needs only the text tower).
    """

    def __init__(
        self,
        config: CLaMP2Config,
        load_text: bool = True,
        load_music: bool = True,
        attn_implementation: str | None = "sdpa",
    ):
        super().__init__()
        self.config = config
        if load_text:
            self.text_model = XLMRobertaModel(text_model_config(config.text, attn_implementation))
            self.text_proj = nn.Linear(config.text.hidden_size, config.embed_dim)
        if load_music:
            self.music_model = M3PatchEncoder(config.music, attn_implementation)
            self.music_proj = nn.Linear(config.music.hidden_size, config.embed_dim)

    def text_hidden(self, ids: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.text_model(input_ids=ids, attention_mask=masks).last_hidden_state

    def music_hidden(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.music_model(patches, masks)

    def get_text_features(
        self, ids: torch.Tensor, masks: torch.Tensor, normalized: bool = True
    ) -> torch.Tensor:
        hidden = self.text_hidden(ids, masks)
        return self.text_proj(masked_mean(hidden, masks)) if normalized else hidden

    def get_music_features(
        self, patches: torch.Tensor, masks: torch.Tensor, normalized: bool = True
    ) -> torch.Tensor:
        hidden = self.music_hidden(patches, masks)
        return self.music_proj(masked_mean(hidden, masks)) if normalized else hidden
