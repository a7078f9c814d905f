"""Training data shared by both objectives, and M3's dataset: windows, the masking mix, instrument names.

Every random choice a sample makes comes from :func:`sample_rng` ``(seed, epoch, index)``, so a sample
is the same whichever process or worker loads it: one process with batch ``2B`` and two processes with
batch ``B`` see exactly the same samples, and a resumed run replays the rest of its epoch unchanged.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from clamp2_engine.encoder import InputError, read_text_file
from clamp2_engine.music.patches import EOS_ID, MASK_ID, PAD_ID, encode_patches
from clamp2_engine.runlog import describe_error
from clamp2_engine.types import MODEL_MUSIC_SUFFIXES

MUSIC_SUFFIXES = MODEL_MUSIC_SUFFIXES
UNIT_LENGTH_LINE = "L:1/8\n"
MAX_SUBSTITUTES = 16  # a sample whose file fails is replaced by the next item, at most this many times
_LINES = re.compile(r".*?\n|.*$")
T = TypeVar("T")


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The random source of one sample in one epoch (independent of rank, worker and batch)."""
    return random.Random((seed * 1_000_003 + epoch) * 1_000_000_007 + index)


def crop(seq: T, length: int, rng: random.Random, train: bool) -> T:
    """Cut an over-long sequence to ``length``: head, tail or a random middle window (training), head (eval)."""
    n = len(seq)  # type: ignore[arg-type]
    if n <= length:
        return seq
    choice = rng.choice(("head", "tail", "middle")) if train else "head"
    if choice == "head":
        return seq[:length]  # type: ignore[index]
    if choice == "tail":
        return seq[-length:]  # type: ignore[index]
    start = rng.randint(1, n - length)
    return seq[start : start + length]  # type: ignore[index]


def remove_instrument_info(text: str) -> str:
    """The reference's instrument-name removal: ABC ``V:`` lines cut at `` nm=``/`` snm=``; MTF programs 0."""
    lines = [ln for ln in _LINES.findall(text) if ln]
    if not lines:
        return text
    mtf = lines[0].split(" ")[0] == "ticks_per_beat"
    out = []
    for line in lines:
        if not mtf and line.startswith("V:"):
            nm, snm = line.find(" nm="), line.find(" snm=")
            if nm != -1:
                line = line[:nm] + "\n"
            elif snm != -1:
                line = line[:snm] + "\n"
        elif mtf and line.startswith("program_change"):
            line = " ".join(line.split(" ")[:-1]) + " 0\n"
        out.append(line)
    return "".join(out)


def mask_patches(
    ids: np.ndarray, ratio: float, rng: random.Random, train: bool
) -> tuple[np.ndarray, np.ndarray]:
    """M3's corruption: pick ``ceil(ratio * n)`` patches; per sample 80 % mask them (all ids 3), 10 % shuffle
    each one's characters between bos and eos, 10 % leave them; evaluation always leaves them.

    Returns the input patches and the 0/1 selection of patches the decoder must rebuild.
    """
    n, size = ids.shape
    order = list(range(n))
    rng.shuffle(order)
    chosen = sorted(order[: math.ceil(ratio * n)])
    inputs = ids.copy()
    choice = rng.choices(("mask", "shuffle", "original"), weights=(0.8, 0.1, 0.1))[0] if train else "original"
    if choice == "mask":
        inputs[chosen] = MASK_ID
    elif choice == "shuffle":
        for i in chosen:
            row = inputs[i]
            eos = np.flatnonzero(row == EOS_ID)
            end = int(eos[0]) if len(eos) == 1 else size  # the reference's .item() fails on 0 or 2+ eos ids
            middle = list(range(1, end))
            rng.shuffle(middle)
            inputs[i] = row[[0, *middle, *range(end, size)]]
    selection = np.zeros(n, dtype=np.int64)
    selection[chosen] = 1
    return inputs, selection


def read_music(path: str | os.PathLike, strip_unit_length: bool = True) -> str:
    """A music file's text; ``.abc`` loses its ``L:1/8`` line as in both reference training scripts."""
    text = read_text_file(path)
    if strip_unit_length and str(path).lower().endswith(".abc"):
        text = text.replace(UNIT_LENGTH_LINE, "")
    return text


def music_ids(text: str, patch_size: int, patch_length: int, rng: random.Random, train: bool) -> np.ndarray:
    """Patch ids with special patches, cut to ``patch_length`` (random window in training)."""
    try:
        ids = encode_patches(text, patch_size)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return crop(ids, patch_length, rng, train)


def with_substitutes(
    n: int, index: int, load: Callable[[int], T], name: Callable[[int], str]
) -> tuple[T, list[tuple[str, str]]]:
    """``load(index)``, or on a bad input the next items' until one loads; the failures as (source, reason)."""
    errors: list[tuple[str, str]] = []
    for k in range(min(n, MAX_SUBSTITUTES)):
        j = (index + k) % n
        try:
            return load(j), errors
        except (InputError, ValueError, OSError, UnicodeError) as exc:
            errors.append((name(j), describe_error(exc)))
    raise RuntimeError(
        f"{len(errors)} consecutive training inputs failed to load; first: {errors[0][0]}: {errors[0][1]}"
    )


class EpochDataset(Dataset):
    """A dataset whose samples depend on (seed, epoch, index); the loop calls :meth:`set_epoch`."""

    def __init__(self, train: bool, seed: int):
        self.train = train
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def rng(self, index: int) -> random.Random:
        return sample_rng(self.seed, self.epoch if self.train else 0, index)


class M3Dataset(EpochDataset):
    """``.abc`` / ``.mtf`` files -> (corrupted patches, selection, target patches)."""

    def __init__(
        self,
        files: Sequence[Path],
        *,
        train: bool,
        patch_size: int,
        patch_length: int,
        mask_ratio: float = 0.45,
        seed: int = 0,
    ):
        super().__init__(train, seed)
        self.files = list(files)
        self.patch_size, self.patch_length, self.mask_ratio = patch_size, patch_length, mask_ratio

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)

        def load(j: int) -> np.ndarray:
            return music_ids(read_music(self.files[j]), self.patch_size, self.patch_length, rng, self.train)

        targets, errors = with_substitutes(len(self.files), index, load, lambda j: str(self.files[j]))
        inputs, selection = mask_patches(targets, self.mask_ratio, rng, self.train)
        return {"patches": inputs, "selection": selection, "targets": targets, "errors": errors}


def pad_stack(rows: Sequence[np.ndarray], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad arrays ``[n_i, ...]`` to ``[B, max n, ...]`` and return them with the ``[B, max n]`` mask."""
    longest = max(len(r) for r in rows)
    out = np.full((len(rows), longest, *rows[0].shape[1:]), pad, dtype=np.int64)
    masks = np.zeros((len(rows), longest), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        masks[i, : len(r)] = 1
    return torch.from_numpy(out), torch.from_numpy(masks)


def collate_m3(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Dynamic padding (padding never changes a real position's output)."""
    patches, masks = pad_stack([b["patches"] for b in batch], PAD_ID)
    targets, _ = pad_stack([b["targets"] for b in batch], PAD_ID)
    selection, _ = pad_stack([b["selection"] for b in batch], 0)
    return batch_of(batch, patches=patches, masks=masks, selection=selection, targets=targets)


def batch_of(samples: list[dict[str, Any]], **tensors: torch.Tensor) -> dict[str, Any]:
    """A collated batch: ``tensors``, the samples' errors, and how many samples it holds."""
    return {**tensors, "errors": [e for s in samples for e in s["errors"]], "size": len(samples)}
