"""Check an ONNX export against the PyTorch model it came from: worst cosine per tower and output."""

from __future__ import annotations

import os

import numpy as np


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two ``[..., H]`` arrays (float64)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(den, 1e-30)


def random_patches(
    lengths: list[int], patch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Padded batch of plausible patches: ``[1, chars..., 2, 0...]`` with printable ASCII characters."""
    batch = np.zeros((len(lengths), max(lengths), patch_size), dtype=np.int64)
    masks = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    for row, n in enumerate(lengths):
        for pos in range(n):
            k = int(rng.integers(0, patch_size - 1))
            batch[row, pos, 0] = 1
            batch[row, pos, 1 : k + 1] = rng.integers(32, 127, k)
            batch[row, pos, k + 1] = 2
        masks[row, :n] = 1
    return batch, masks


def random_tokens(
    lengths: list[int], vocab: int, pad_id: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Padded batch of ``<s> ids... </s>`` sequences (ids 0 and 2 as XLM-R's bos/eos)."""
    batch = np.full((len(lengths), max(lengths)), pad_id, dtype=np.int64)
    masks = np.zeros_like(batch)
    for row, n in enumerate(lengths):
        batch[row, :n] = rng.integers(3, vocab, n)
        batch[row, 0], batch[row, n - 1] = 0, 2
        masks[row, :n] = 1
    return batch, masks


def compare(onnx_forward, torch_forward, ids: np.ndarray, masks: np.ndarray, pooled: bool) -> float:
    """Worst cosine between two runtimes' outputs (pooled rows, or every real position's hidden state)."""
    got, want = onnx_forward(ids, masks, pooled=pooled), torch_forward(ids, masks, pooled=pooled)
    if got.shape != want.shape:
        raise AssertionError(f"ONNX output shape {got.shape} != PyTorch {want.shape}")
    cos = row_cosines(got, want)
    return float(cos.min() if pooled else cos[masks.astype(bool)].min())


def verify_export(
    onnx_dir: str | os.PathLike, module, seed: int = 0, providers=None, towers=("music", "text")
) -> dict[str, float]:
    """Worst cosines (``"music.pooled"``, ``"music.hidden"``, ``"text.pooled"``, ``"text.hidden"``) of the
    export's ``towers`` in ``onnx_dir`` against ``module`` (the PyTorch model it was exported from) in fp32
    on CPU."""
    from clamp2_engine.runtime.onnx_loader import open_export
    from clamp2_engine.runtime.onnx_runtime import CPU
    from clamp2_engine.runtime.torch_runtime import TorchRuntime

    ort_rt, tokenizer, ident = open_export(
        onnx_dir, device="cpu", providers=providers or [CPU], towers=towers
    )
    ref = TorchRuntime(module, "cpu", "fp32")
    rng = np.random.default_rng(seed)
    results: dict[str, float] = {}
    outputs = (True, False) if ident.kind == "clamp2" else (False,)
    full, short = ident.patch_length, min(ident.patch_length, 37)
    for lengths in ([full, short, 5], [1]) if ort_rt.has_music else ():
        batch = random_patches(lengths, ident.patch_size, rng)
        for pooled in outputs:
            key = f"music.{'pooled' if pooled else 'hidden'}"
            results[key] = min(results.get(key, 1.0), compare(ort_rt.music, ref.music, *batch, pooled))
    if ort_rt.has_text:
        tok = tokenizer
        vocab = min(len(tok), module.config.text.vocab_size)
        for lengths in ([ident.max_text_length, 23, 4], [2]):
            batch = random_tokens(lengths, vocab, tok.pad_token_id, rng)
            for pooled in (True, False):
                key = f"text.{'pooled' if pooled else 'hidden'}"
                results[key] = min(results.get(key, 1.0), compare(ort_rt.text, ref.text, *batch, pooled))
    return results
