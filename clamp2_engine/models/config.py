"""Small configuration dataclasses for M3 and CLaMP 2 (sizes normally read from checkpoint shapes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from clamp2_engine.music.patches import ALPHABET, PATCH_LENGTH, PATCH_SIZE
from clamp2_engine.music.text import MAX_TEXT_LENGTH


@dataclass(frozen=True)
class M3Config:
    """The M3 patch encoder (BERT over patch embeddings) and its char-level GPT-2 decoder."""

    hidden_size: int = 768
    num_layers: int = 12
    patch_size: int = PATCH_SIZE
    patch_length: int = PATCH_LENGTH
    decoder_layers: int = 3
    alphabet: int = ALPHABET
    type_vocab_size: int = 2

    @property
    def num_heads(self) -> int:
        return max(1, self.hidden_size // 64)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TextConfig:
    """The XLM-R text tower's shape (a subset of ``XLMRobertaConfig``)."""

    vocab_size: int = 250002
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    pad_token_id: int = 1
    layer_norm_eps: float = 1e-5
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


@dataclass(frozen=True)
class CLaMP2Config:
    """CLaMP 2: an M3 music tower and an XLM-R text tower, both projected to ``embed_dim``."""

    music: M3Config = field(default_factory=M3Config)
    text: TextConfig = field(default_factory=TextConfig)
    embed_dim: int = 768
    max_text_length: int = MAX_TEXT_LENGTH

    def as_dict(self) -> dict[str, Any]:
        return {
            "music": self.music.as_dict(),
            "text": self.text.as_dict(),
            "embed_dim": self.embed_dim,
            "max_text_length": self.max_text_length,
        }
