"""The interface every inference backend implements: batched forward passes on padded numpy arrays."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

# Default token budgets per (device type, dtype), measured by benchmarks/bench_embed.py --sweep: a CPU is
# compute-bound from a few hundred positions a pass, so larger passes only add padding and fall out of
# cache (1024: two 512-patch windows, or many short ones); a GPU wants many windows a pass.
BATCH_TOKENS: dict[tuple[str, str], int] = {
    ("cpu", "fp32"): 1024,
    ("cpu", "bf16"): 1024,
    ("cuda", "fp32"): 16384,
    ("cuda", "bf16"): 32768,
    ("cuda", "fp16"): 32768,
}


class Runtime(ABC):
    """Forward passes of the music and text towers.

    Inputs are padded id arrays (music ``[B, L, P]``, uint8 or int64; text ``[B, L]``, int64) and masks
    ``[B, L]`` (uint8 or int64, 1 for real positions); each runtime makes them the int64 its model takes. ``pooled=True`` returns masked-mean-pooled, projected features ``[B, D]``;
    ``pooled=False`` returns last hidden states ``[B, L, H]``. Outputs are float32 numpy arrays.
    """

    backend: str = ""  # "torch" or "onnx"
    dtype_name: str = "fp32"  # the precision it computes at
    kind: str = "clamp2"  # or "m3" (music tower only, no projection)
    has_music: bool = True
    has_text: bool = True

    def batch_tokens(self, tower: str) -> int:
        """Padded positions per forward pass that this runtime runs well (the encoder's default budget)."""
        return BATCH_TOKENS[("cpu", "fp32")]

    @abstractmethod
    def music(self, patches: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray: ...

    @abstractmethod
    def text(self, ids: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray: ...
