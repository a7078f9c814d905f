"""What is exported: each tower as a traceable ``nn.Module`` (:class:`MusicGraph`, :class:`TextGraph`) with its
example inputs, dynamic axes and metadata (:class:`Tower`), and the tracing itself (:func:`trace`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clamp2_engine.models.clamp2 import CLaMP2Model, masked_mean
from clamp2_engine.models.m3 import M3PatchEncoder
from clamp2_engine.runtime.onnx_folder import FORMAT_VERSION, META, tokenizer_fingerprint


class MusicGraph(nn.Module):
    """Patch ids ``[B, L, P]`` and masks ``[B, L]`` -> ``(pooled [B, D], hidden [B, L, H])`` (M3: ``hidden``)."""

    def __init__(self, encoder: M3PatchEncoder, proj: nn.Linear | None = None):
        super().__init__()
        cfg = encoder.config
        self.encoder, self.proj = encoder, proj
        self.patch_size, self.alphabet = cfg.patch_size, cfg.alphabet
        self.register_buffer(
            "table", encoder.patch_embedding.weight.detach().t().contiguous(), persistent=False
        )

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """Sum of one gathered ``[H]`` row per patch position (equals the one-hot ``Linear``)."""
        out = self.encoder.patch_embedding.bias
        for p in range(self.patch_size):
            out = out + nn.functional.embedding(patches[..., p] + p * self.alphabet, self.table)
        return out

    def forward(self, patches: torch.Tensor, masks: torch.Tensor):
        hidden = self.encoder.base(inputs_embeds=self.embed(patches), attention_mask=masks).last_hidden_state
        if self.proj is None:
            return hidden
        return self.proj(masked_mean(hidden, masks)), hidden


class TextGraph(nn.Module):
    """Token ids ``[B, L]`` and masks ``[B, L]`` -> ``(pooled [B, D], hidden [B, L, H])``."""

    def __init__(self, model: CLaMP2Model):
        super().__init__()
        self.text_model, self.proj = model.text_model, model.text_proj

    def forward(self, ids: torch.Tensor, masks: torch.Tensor):
        hidden = self.text_model(input_ids=ids, attention_mask=masks).last_hidden_state
        return self.proj(masked_mean(hidden, masks)), hidden


@dataclass
class Tower:
    """One graph to export: its module, input names, example inputs and metadata."""

    name: str  # "music" | "text"
    module: nn.Module
    inputs: tuple[str, str]
    outputs: tuple[str, ...]
    example: tuple[torch.Tensor, torch.Tensor]
    num_heads: int
    hidden_size: int
    metadata: dict[str, str] = field(default_factory=dict)


def towers_for(module: CLaMP2Model | M3PatchEncoder, identity: dict[str, Any], tokenizer=None) -> list[Tower]:
    """The graphs of a loaded model: music (always) and text (CLaMP 2)."""
    from clamp2_engine.music.patches import ALPHABET

    common = {META + "format": FORMAT_VERSION, META + "identity": json.dumps(identity, sort_keys=True)}
    p, n = identity["patch_size"], 3
    patches = torch.randint(0, ALPHABET, (2, n, p))
    masks = torch.ones(2, n, dtype=torch.long)
    masks[1, -1] = 0
    music_meta = {
        **common,
        META + "tower": "music",
        META + "patch_size": str(p),
        META + "patch_length": str(identity["patch_length"]),
        META + "alphabet": str(ALPHABET),
    }
    if isinstance(module, M3PatchEncoder):
        graph, outputs, heads = MusicGraph(module), ("hidden",), module.config.num_heads
        return [
            Tower(
                "music",
                graph.eval(),
                ("patches", "masks"),
                outputs,
                (patches, masks),
                heads,
                module.config.hidden_size,
                music_meta,
            )
        ]
    cfg = module.config
    towers = [
        Tower(
            "music",
            MusicGraph(module.music_model, module.music_proj).eval(),
            ("patches", "masks"),
            ("pooled", "hidden"),
            (patches, masks),
            cfg.music.num_heads,
            cfg.music.hidden_size,
            music_meta,
        )
    ]
    if hasattr(module, "text_model"):
        ids = torch.randint(3, cfg.text.vocab_size, (2, 5))
        tmask = torch.ones(2, 5, dtype=torch.long)
        tmask[1, -2:] = 0
        ids[1, -2:] = tokenizer.pad_token_id
        text_meta = {
            **common,
            META + "tower": "text",
            META + "max_text_length": str(identity["max_text_length"]),
            META + "vocab_size": str(cfg.text.vocab_size),
            **{META + k: v for k, v in tokenizer_fingerprint(tokenizer).items()},
        }
        towers.append(
            Tower(
                "text",
                TextGraph(module).eval(),
                ("input_ids", "attention_mask"),
                ("pooled", "hidden"),
                (ids, tmask),
                cfg.text.num_heads,
                cfg.text.hidden_size,
                text_meta,
            )
        )
    return towers


def word_embeddings(tower: Tower) -> nn.Embedding | None:
    """The text tower's word table (kept out of the export's in-memory work: :mod:`.word_table`)."""
    return tower.module.text_model.get_input_embeddings() if isinstance(tower.module, TextGraph) else None


def trace(tower: Tower, path: Path, opset: int) -> None:
    """``torch.onnx.export`` (TorchScript exporter) with dynamic batch and length axes."""
    import warnings

    axes = {
        tower.inputs[0]: {0: "batch", 1: "length"},
        tower.inputs[1]: {0: "batch", 1: "length"},
        "hidden": {0: "batch", 1: "length"},
        "pooled": {0: "batch"},
    }
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter(
            "ignore"
        )  # tracer notes about Python conditionals on shapes (checked by verify)
        torch.onnx.export(
            tower.module,
            tower.example,
            os.fspath(path),
            input_names=list(tower.inputs),
            output_names=list(tower.outputs),
            dynamic_axes={k: v for k, v in axes.items() if k in (*tower.inputs, *tower.outputs)},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
