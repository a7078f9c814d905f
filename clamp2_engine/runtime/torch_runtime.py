"""PyTorch backend: eager transformers modules with SDPA attention under ``torch.inference_mode``."""

from __future__ import annotations

import numpy as np
import torch

from clamp2_engine.errors import about, first_line
from clamp2_engine.models.clamp2 import CLaMP2Model, masked_mean
from clamp2_engine.models.m3 import M3PatchEncoder
from clamp2_engine.runtime.base import BATCH_TOKENS, Runtime
from clamp2_engine.runtime.precision import AUTO, resolve

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(device: str | None = None) -> torch.device:
    """The one device picker: ``device`` as given (``cpu``, ``cuda``, ``cuda:1``); ``None`` or ``"auto"``:
    CUDA when available, else CPU. A name torch does not know, or CUDA without a GPU, is a ``ValueError``."""
    if not device or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}: {first_line(exc)}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise about(ValueError(f"device {device} was asked for but PyTorch sees no CUDA device"), "device")
    return dev


class TorchRuntime(Runtime):
    """Runs a :class:`CLaMP2Model` (either tower) or a bare :class:`M3PatchEncoder`."""

    backend = "torch"

    def __init__(
        self,
        model: CLaMP2Model | M3PatchEncoder,
        device: str | torch.device | None = None,
        dtype: str | None = AUTO,
    ):
        self.device = pick_device(str(device) if device is not None else None)
        dtype = resolve(dtype, self.device)  # checked; "auto": what this device computes fast
        self.dtype, self.dtype_name = DTYPES[dtype], dtype
        self.model = model.to(self.device, dtype=self.dtype).eval()
        for module in self.model.modules():
            if isinstance(module, M3PatchEncoder):
                module.prepare_inference()
        if isinstance(model, M3PatchEncoder):
            self.kind, self.has_music, self.has_text = "m3", True, False
        else:
            self.kind = "clamp2"
            self.has_music = hasattr(model, "music_model")
            self.has_text = hasattr(model, "text_model")

    def batch_tokens(self, tower: str) -> int:
        return BATCH_TOKENS.get((self.device.type, self.dtype_name), BATCH_TOKENS[("cpu", "fp32")])

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """Ids or masks on the device as int64; they travel as they come (uint8 patch ids and masks: an
        eighth of int64's bytes), from pinned memory to a GPU."""
        t = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True).long()

    @staticmethod
    def _out(t: torch.Tensor) -> np.ndarray:
        return t.float().cpu().numpy()

    @torch.inference_mode()
    def music(self, patches: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray:
        if not self.has_music:
            raise RuntimeError("this model has no music tower loaded")
        x, m = self._tensor(patches), self._tensor(masks)
        if self.kind == "m3":
            if pooled:
                raise ValueError("M3 has no projection: its features are raw hidden states (pooled=False)")
            return self._out(self.model(x, m))
        return self._out(self.model.get_music_features(x, m, normalized=pooled))

    @torch.inference_mode()
    def text(self, ids: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray:
        if not self.has_text:
            raise RuntimeError("this model has no text tower loaded")
        return self._out(
            self.model.get_text_features(self._tensor(ids), self._tensor(masks), normalized=pooled)
        )


__all__ = ["TorchRuntime", "pick_device", "masked_mean"]
