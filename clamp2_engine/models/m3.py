"""M3: a BERT encoder over 64-character patches, and the GPT-2 decoder used to pre-train it."""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

from clamp2_engine.models.config import M3Config


def _attn(attn_implementation: str | None) -> dict:
    return {"attn_implementation": attn_implementation} if attn_implementation else {}


class M3PatchEncoder(nn.Module):
    """Patch ids ``[B, L, P]`` -> BERT hidden states ``[B, L, H]``.

    The reference one-hot encodes ids (``P * 128`` features) and applies ``Linear(P*128, H)``; that equals
    summing ``P`` gathered weight columns plus the bias, which is what :meth:`embed_patches` does.
    """

    def __init__(self, config: M3Config, attn_implementation: str | None = "sdpa"):
        super().__init__()
        self.config = config
        self.patch_embedding = nn.Linear(config.patch_size * config.alphabet, config.hidden_size)
        bert = BertConfig(
            vocab_size=1,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=4 * config.hidden_size,
            max_position_embeddings=config.patch_length,
            type_vocab_size=config.type_vocab_size,
            layer_norm_eps=1e-12,
            **_attn(attn_implementation),
        )
        self.base = BertModel(bert)
        offsets = torch.arange(config.patch_size, dtype=torch.long) * config.alphabet
        self.register_buffer("char_offsets", offsets, persistent=False)
        self.register_buffer("patch_table", None, persistent=False)

    def prepare_inference(self) -> M3PatchEncoder:
        """Keep a contiguous ``[P*128, H]`` copy of the patch embedding's weight for :meth:`embed_patches`.

        Gathering rows of the transposed ``Linear`` weight (a strided view) misses the cache on every
        element: a quarter of a 512-patch forward pass on CPU. The copy (25 MB at fp32) follows ``.to()``;
        call this again after changing the weights, and it is ignored in training mode."""
        self.patch_table = self.patch_embedding.weight.detach().t().contiguous()
        return self

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Gather-sum patch embedding: ``[B, L, P]`` ids -> ``[B, L, H]``, no one-hot matrix built."""
        b, length, p = patches.shape
        flat = (patches + self.char_offsets[:p]).reshape(b * length, p)
        table = self.patch_table
        weight = table if table is not None and not self.training else self.patch_embedding.weight.t()
        summed = nn.functional.embedding_bag(flat, weight, mode="sum")
        return (summed + self.patch_embedding.bias).reshape(b, length, -1)

    def forward(self, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        embeds = self.embed_patches(patches).to(self.base.embeddings.word_embeddings.weight.dtype)
        return self.base(inputs_embeds=embeds, attention_mask=masks).last_hidden_state


class M3PatchDecoder(nn.Module):
    """Reconstructs each patch's characters from its encoder feature (training only)."""

    def __init__(self, config: M3Config, attn_implementation: str | None = "sdpa"):
        super().__init__()
        self.config = config
        gpt = GPT2Config(
            vocab_size=config.alphabet,
            n_positions=config.patch_size,
            n_embd=config.hidden_size,
            n_layer=config.decoder_layers,
            n_head=config.num_heads,
            n_inner=4 * config.hidden_size,
            bos_token_id=1,
            eos_token_id=2,
            **_attn(attn_implementation),
        )
        self.base = GPT2LMHeadModel(gpt)

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of ``targets`` ``[N, P]`` given patch ``features`` ``[N, H]``."""
        labels = targets.clone()
        labels[labels == 0] = -100
        embeds = self.base.transformer.wte(targets[:, 1:])
        inputs = torch.cat([features.unsqueeze(1), embeds], dim=1)
        return self.base(inputs_embeds=inputs, labels=labels).loss


class M3Model(nn.Module):
    """Encoder + decoder, keys ``encoder.*`` / ``decoder.*`` as in the reference checkpoint."""

    def __init__(self, config: M3Config, attn_implementation: str | None = "sdpa"):
        super().__init__()
        self.config = config
        self.encoder = M3PatchEncoder(config, attn_implementation)
        self.decoder = M3PatchDecoder(config, attn_implementation)

    def forward(
        self, patches: torch.Tensor, masks: torch.Tensor, selection: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Masked-patch reconstruction loss: ``selection`` ``[B, L]`` marks the patches to rebuild."""
        hidden = self.encoder(patches, masks)
        sel = selection.bool() & masks.bool()
        return self.decoder(hidden[sel], targets[sel])
