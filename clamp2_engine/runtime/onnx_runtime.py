"""ONNX Runtime backend: sessions over the graphs written by ``clamp2-engine export onnx`` and the
:class:`~clamp2_engine.runtime.base.Runtime` that runs them (the export folder is :mod:`.onnx_export`; loading
and checking one is :mod:`.onnx_loader`). Segmenting and the weighted mean over segments stay in the shared
:class:`~clamp2_engine.encoder.Encoder`, so both backends give the same features.

Providers are chosen in one place (:func:`select_providers`): explicit providers win, else CUDA when
``onnxruntime-gpu`` offers it, else CPU (with one warning).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from clamp2_engine.runtime.base import BATCH_TOKENS, Runtime

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
ENV_PROVIDERS = "CLAMP2_ORT_PROVIDERS"  # comma-separated, e.g. "CPUExecutionProvider"
ENV_THREADS = "CLAMP2_ORT_THREADS"  # intra-op threads (default: ONNX Runtime's, one per physical core)
Provider = str | tuple[str, dict[str, Any]]
log = logging.getLogger(__name__)
_warned_cpu = False


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def select_providers(
    providers: Sequence[Provider] | None = None,
    device: str | None = None,
    available: Sequence[str] | None = None,
) -> list[Provider]:
    """The execution providers to use, decided here and only here.

    Explicit ``providers`` (or ``$CLAMP2_ORT_PROVIDERS``) win; else ``device`` (``cpu``, ``cuda``,
    ``cuda:N``); else CUDA when ONNX Runtime offers it, else CPU: silently on a machine without a GPU,
    with one warning per process where a GPU is there but this onnxruntime cannot use it.
    """
    global _warned_cpu
    if not providers and os.environ.get(ENV_PROVIDERS):
        providers = [p.strip() for p in os.environ[ENV_PROVIDERS].split(",") if p.strip()]
    if providers:
        return list(providers)
    available = available_providers() if available is None else list(available)
    if device:
        name, _, index = device.partition(":")
        if name == "cpu":
            return [CPU]
        if name != "cuda":
            raise ValueError(f"unknown device {device!r} for the ONNX backend; use cpu, cuda or cuda:N")
        if CUDA not in available:
            raise RuntimeError(
                "device cuda was asked for but ONNX Runtime offers no CUDAExecutionProvider "
                "(pip install onnxruntime-gpu)"
            )
        return [(CUDA, {"device_id": int(index or 0)}), CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if not _warned_cpu and _has_gpu():  # a GPU that this onnxruntime cannot use is worth a word, once
        _warned_cpu = True
        log.warning(
            "ONNX Runtime has no CUDAExecutionProvider here: running on CPU (install onnxruntime-gpu "
            "for GPU inference, or ask for the cpu device to silence this)"
        )
    return [CPU]


def _has_gpu() -> bool:
    """Whether this machine has an NVIDIA GPU (its driver's device files), decided without torch."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def session_options(threads: int | None = None):
    """Session options: all graph optimizations, ``threads`` intra-op threads (or ``$CLAMP2_ORT_THREADS``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is None and os.environ.get(ENV_THREADS):
        threads = int(os.environ[ENV_THREADS])
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: node-placement notes are not for users
    return opts


def build_session(
    path: str | os.PathLike,
    providers: Sequence[Provider] | None = None,
    threads: int | None = None,
    device: str | None = None,
):
    """An ``InferenceSession`` for ``path`` on the providers :func:`select_providers` picks."""
    import onnxruntime as ort

    chosen = select_providers(providers, device)
    return ort.InferenceSession(os.fspath(path), session_options(threads), providers=chosen)


def graph_metadata(session) -> dict[str, str]:
    return dict(session.get_modelmeta().custom_metadata_map)


class OnnxRuntime(Runtime):
    """Music and text forward passes on ONNX Runtime sessions (either may be ``None``)."""

    backend = "onnx"

    def __init__(self, music_session=None, text_session=None, kind: str = "clamp2"):
        self.music_session, self.text_session, self.kind = music_session, text_session, kind
        self.has_music = music_session is not None
        self.has_text = text_session is not None and kind == "clamp2"

    @property
    def dtype_name(self) -> str:
        """The graphs' precision, as ``export onnx`` wrote it (fp32, fp16, int8)."""
        from clamp2_engine.runtime.onnx_folder import META

        session = self.text_session or self.music_session
        if session is None:
            return "fp32"
        return session.get_modelmeta().custom_metadata_map.get(META + "precision", "fp32")

    def batch_tokens(self, tower: str) -> int:
        session = self.music_session if tower == "music" else self.text_session
        on_gpu = session is not None and session.get_providers()[0] == CUDA
        return BATCH_TOKENS[("cuda" if on_gpu else "cpu", "fp32")]

    @staticmethod
    def _run(session, names: tuple[str, str], ids: np.ndarray, masks: np.ndarray, output: str) -> np.ndarray:
        feed = {
            names[0]: np.ascontiguousarray(ids, dtype=np.int64),
            names[1]: np.ascontiguousarray(masks, dtype=np.int64),
        }
        return np.asarray(session.run([output], feed)[0], dtype=np.float32)

    def music(self, patches: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray:
        if not self.has_music:
            raise RuntimeError("this model has no music tower loaded")
        if pooled and self.kind == "m3":
            raise ValueError("M3 has no projection: its features are raw hidden states (pooled=False)")
        return self._run(
            self.music_session, ("patches", "masks"), patches, masks, "pooled" if pooled else "hidden"
        )

    def text(self, ids: np.ndarray, masks: np.ndarray, pooled: bool) -> np.ndarray:
        if not self.has_text:
            raise RuntimeError("this model has no text tower loaded")
        names = ("input_ids", "attention_mask")
        return self._run(self.text_session, names, ids, masks, "pooled" if pooled else "hidden")
