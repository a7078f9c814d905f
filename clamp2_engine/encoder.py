"""Batched embedding: inputs -> ids -> windows -> length-sorted batches within a token budget -> features.

The one path from text or music to a vector, shared by ``embed``, ``ingest``, ``search``, evaluation and
every backend. Windowing and recombination follow the reference extractors exactly:

- windows ``[0:S], [S:2S], ...`` with the last replaced by the last ``S`` positions;
- pooled: the windows' pooled features averaged with weights ``[S]*full + [len % S]``;
- raw: the windows' real hidden states concatenated, the last cut to its last ``len % S`` rows.

Windows are sorted longest first and cut into batches that hold at most ``max_batch_tokens`` padded
positions (patches or tokens) each, as the fastest embedding libraries batch: a pass of many short windows
costs what one long window costs, and no pass is larger than the device runs well (see
:meth:`Runtime.batch_tokens`). A window longer than the budget runs alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from clamp2_engine.music.patches import PAD_ID, encode_patches, is_mtf
from clamp2_engine.music.text import (  # noqa: F401 - InputError and read_text_file: part of this API
    MAX_TEXT_LENGTH,
    InputError,
    join_for_tokenizer,
    read_text_file,
)
from clamp2_engine.runlog import progress_bar
from clamp2_engine.runtime.base import Runtime

PROGRESS_MIN_WINDOWS = 256
MAX_WINDOWS = 1024  # windows per pass at most, whatever the budget


def _as_text(item: str | os.PathLike) -> str:
    """A path (``Path``, any ``os.PathLike``) is read; a string is the text itself (never guessed to be a
    file name)."""
    if isinstance(item, os.PathLike):
        return read_text_file(item)
    if isinstance(item, str):
        return item
    raise InputError(f"expected a Path or a string, got {type(item).__name__}")


def windows(length: int, size: int) -> list[tuple[int, int]]:
    """Reference segmentation: consecutive windows of ``size``, the last one the final ``size`` positions."""
    spans = [(s, min(s + size, length)) for s in range(0, length, size)]
    spans[-1] = (max(0, length - size), length)
    return spans


def combine_pooled(vectors: np.ndarray, length: int, size: int) -> np.ndarray:
    """Weighted mean of per-window pooled features, weights ``[size]*full + [remainder]``."""
    full, rem = divmod(length, size)
    weights = np.array([size] * full + ([rem] if rem else []), dtype=np.float64)
    return (vectors.astype(np.float64) * weights[:, None]).sum(0).astype(np.float32) / np.float32(
        weights.sum()
    )


def combine_raw(hidden: list[np.ndarray], length: int, size: int) -> np.ndarray:
    """Concatenate per-window hidden states, the last window cut to its last ``length % size`` rows."""
    parts = list(hidden)
    rem = length % size
    if rem:
        parts[-1] = parts[-1][-rem:]
    return np.concatenate(parts, axis=0)


MIN_FILL = 0.7  # a batch ends before a window shorter than this share of its longest (padding cap)


def plan_batches(
    lengths: Sequence[int], max_tokens: int, max_windows: int = MAX_WINDOWS, min_fill: float = MIN_FILL
) -> list[slice]:
    """Cut windows sorted longest first (``lengths``) into consecutive batches of at most ``max_tokens``
    padded positions (a batch pads to its first, longest window) and at most ``max_windows`` windows; a
    batch also ends before a window shorter than ``min_fill`` of its longest, so that the positions run
    stay within ``1 / min_fill`` of the real ones (one 1,262-patch piece beside short ones ran 4.6x its
    useful work in one padded batch; 1.13x with this cap)."""
    batches, start = [], 0
    while start < len(lengths):
        per_window = max(1, lengths[start])
        size = max(1, min(max_windows, max_tokens // per_window, len(lengths) - start))
        floor = min_fill * lengths[start]
        end = start + 1
        while end < start + size and lengths[end] >= floor:
            end += 1
        batches.append(slice(start, end))
        start = end
    return batches


def prefetched(build: Callable[[Any], Any], items: Sequence[Any], ahead: bool) -> Iterator[tuple[Any, Any]]:
    """``(item, build(item))`` in order; with ``ahead``, the next item's is built in a thread meanwhile."""
    if not ahead or len(items) < 2:
        yield from ((item, build(item)) for item in items)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clamp2-batch") as pool:
        pending = pool.submit(build, items[0])
        for k, item in enumerate(items):
            built = pending.result()
            if k + 1 < len(items):
                pending = pool.submit(build, items[k + 1])
            yield item, built


class Encoder:
    """Turns items into features with any :class:`Runtime`; sizes come from the loaded model."""

    def __init__(
        self,
        runtime: Runtime,
        tokenizer=None,
        *,
        patch_size: int,
        patch_length: int,
        max_text_length: int = MAX_TEXT_LENGTH,
        strip_unit_length: bool = False,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
    ):
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.patch_size = patch_size
        self.patch_length = patch_length
        self.max_text_length = max_text_length
        self.strip_unit_length = strip_unit_length  # the M3 extractor drops "L:1/8\n" from ABC
        self.batch_size = batch_size  # windows per pass at most (None: as many as the budget allows)
        self.max_batch_tokens = max_batch_tokens  # None: the runtime's default for its device and dtype
        # the next batch is built while the device computes this one (an accelerator; a CPU builds it
        # between passes, where building it beside the forward pass would only take a core from it)
        self.prefetch = getattr(runtime, "device", None) is not None and runtime.device.type != "cpu"

    @classmethod
    def from_identity(
        cls,
        runtime: Runtime,
        tokenizer: Any,
        identity: Any,
        *,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
    ) -> Encoder:
        """The encoder of a loaded model, its sizes from its identity (a ``ModelIdentity`` or its dict)."""
        ident = identity if isinstance(identity, dict) else identity.as_dict()
        return cls(
            runtime,
            tokenizer,
            patch_size=ident["patch_size"],
            patch_length=ident["patch_length"],
            max_text_length=ident.get("max_text_length") or MAX_TEXT_LENGTH,
            strip_unit_length=ident["kind"] == "m3",
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
        )

    # -- preparation (per item; raises InputError / ValueError for that item) --
    def prepare_music(self, item: str | os.PathLike) -> np.ndarray:
        text = _as_text(item)
        if self.strip_unit_length and not is_mtf(text):
            text = text.replace("L:1/8\n", "")
        try:
            return encode_patches(text, self.patch_size)
        except ValueError as exc:
            raise InputError(str(exc)) from None

    def prepare_text(self, item: str | os.PathLike) -> np.ndarray:
        if self.tokenizer is None:
            raise RuntimeError("this model has no text tower / tokenizer loaded")
        text = _as_text(item)
        try:
            joined = join_for_tokenizer(text, self.tokenizer.sep_token)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return np.asarray(self.tokenizer(joined)["input_ids"], dtype=np.int64)

    # -- batched forward --
    def budget(self, tower: str, max_batch_tokens: int | None = None) -> int:
        """Padded positions per forward pass: the argument, else the encoder's, else the runtime's default."""
        return max(1, max_batch_tokens or self.max_batch_tokens or self.runtime.batch_tokens(tower))

    def features(
        self,
        tower: str,
        prepared: Sequence[np.ndarray],
        pooled: bool = True,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        max_batch_tokens: int | None = None,
    ) -> list[np.ndarray]:
        """Features for already-prepared id arrays, in input order (pooled ``[D]`` or raw ``[len, H]``)."""
        if tower == "music":
            size, pad, forward = self.patch_length, PAD_ID, self.runtime.music
        elif tower == "text":
            size, forward = self.max_text_length, self.runtime.text
            pad = self.tokenizer.pad_token_id if self.tokenizer is not None else 1
        else:
            raise ValueError(f"unknown tower {tower!r}")
        jobs = [
            (i, w, s, e) for i, ids in enumerate(prepared) for w, (s, e) in enumerate(windows(len(ids), size))
        ]
        jobs.sort(key=lambda j: j[3] - j[2], reverse=True)  # longest first: least padding, OOM shows early
        plan = plan_batches(
            [e - s for _, _, s, e in jobs],
            self.budget(tower, max_batch_tokens),
            batch_size or self.batch_size or MAX_WINDOWS,
        )
        outputs: list[list[np.ndarray | None]] = [[None] * len(windows(len(ids), size)) for ids in prepared]
        show = len(jobs) >= PROGRESS_MIN_WINDOWS if show_progress is None else show_progress
        small = tower == "music"  # patch ids (< 128) travel as uint8; token ids need int64

        def build(chunk: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
            longest = chunk[0][3] - chunk[0][2]
            shape = (len(chunk), longest, *prepared[chunk[0][0]].shape[1:])
            batch = np.full(shape, pad, dtype=np.uint8 if small else np.int64)
            masks = np.zeros((len(chunk), longest), dtype=np.uint8)
            for row, (i, _w, s, e) in enumerate(chunk):
                batch[row, : e - s] = prepared[i][s:e]
                masks[row, : e - s] = 1
            return batch, masks

        with progress_bar(f"embedding {tower}", len(jobs), enabled=show) as advance:
            for chunk, (batch, masks) in prefetched(build, [jobs[part] for part in plan], self.prefetch):
                out = forward(batch, masks, pooled=pooled)
                for row, (i, w, s, e) in enumerate(chunk):
                    outputs[i][w] = out[row] if pooled else out[row, : e - s]
                advance(len(chunk))
        results = []
        for ids, parts in zip(prepared, outputs, strict=True):
            if pooled:
                results.append(combine_pooled(np.stack(parts), len(ids), size))
            else:
                results.append(combine_raw(parts, len(ids), size))
        return results

    def encode(
        self,
        tower: str,
        items: Iterable[str | os.PathLike],
        pooled: bool = True,
        batch_size: int | None = None,
        show_progress: bool | None = None,
        max_batch_tokens: int | None = None,
    ) -> list[np.ndarray]:
        prepare = self.prepare_music if tower == "music" else self.prepare_text
        prepared = [prepare(item) for item in items]
        return self.features(tower, prepared, pooled, batch_size, show_progress, max_batch_tokens)
