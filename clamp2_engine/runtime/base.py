"""The interface every inference backend implements: batched forward passes on padded numpy arrays."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Runtime(ABC):
    """Forward passes of the music and text towers.

    Inputs are padded id arrays (music ``[B, L, P]``, text ``[B, L]``, int64) and masks ``[B, L]`` (1 for
    real positions). ``pooled=True`` returns masked-mean-pooled, projected features ``[B, D]``;
    ``pooled=False`` returns last hidden states ``[B, L, H]``. Outputs are float32 numpy arrays.
    """

    kind: str = "clamp2"  # or "m3" (music tower only, no projection)
    has_music: bool = True
    has_text: bool = True

    @abstractmethod
    def music(self, patches: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray: ...

    @abstractmethod
    def text(self, ids: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray: ...
