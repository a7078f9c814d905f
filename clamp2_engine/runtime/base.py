"""The interface every inference backend implements: batched forward passes on padded numpy arrays."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

# Default token budgets per (device type, dtype), measured by benchmarks/bench_embed.py --sweep: on CPU a
# pass of about two 512-patch windows runs fastest (larger ones fall out of cache); a GPU wants many.
BATCH_TOKENS: dict[tuple[str, str], int] = {
    ("cpu", "fp32"): 1024,
    ("cpu", "bf16"): 2048,
    ("cpu", "int8"): 2048,
    ("cuda", "fp32"): 16384,
    ("cuda", "bf16"): 32768,
    ("cuda", "fp16"): 32768,
}


class Runtime(ABC):
    """Forward passes of the music and text towers.

    Inputs are padded id arrays (music ``[B, L, P]``, text ``[B, L]``, int64) and masks ``[B, L]`` (1 for
    real positions). ``pooled=True`` returns masked-mean-pooled, projected features ``[B, D]``;
    ``pooled=False`` returns last hidden states ``[B, L, H]``. Outputs are float32 numpy arrays.
    """

    backend: str = ""  # "torch" or "onnx"
    kind: str = "clamp2"  # or "m3" (music tower only, no projection)
    has_music: bool = True
    has_text: bool = True

    def batch_tokens(self, modality: str) -> int:
        """Padded positions per forward pass that this runtime runs well (the encoder's default budget)."""
        return BATCH_TOKENS[("cpu", "fp32")]

    @abstractmethod
    def music(self, patches: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray: ...

    @abstractmethod
    def text(self, ids: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray: ...
