"""What a set of features was made with: stored with collections and ONNX exports, checked on reuse."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class ModelIdentity:
    """The model behind some vectors: checkpoint hash, sizes and text settings."""

    name: str  # registry name or checkpoint file name
    kind: str  # "clamp2" | "m3"
    checkpoint_sha256: str
    embed_dim: int  # pooled feature size (clamp2), hidden size (m3)
    music_hidden_size: int
    text_hidden_size: int | None
    patch_size: int
    patch_length: int
    max_text_length: int | None
    text_model: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
