"""CLaMP 2 training pairs: the seed JSONL, the reference's text dropout, and the paired dataset.

An item is one JSON object per line: metadata fields, ``summary_en`` (a string or a list),
``summary_nen`` (a ``{"language", "summary"}`` dict or a list of them) and ``filepaths`` (``.abc`` /
``.mtf`` paths relative to the JSONL's folder; one escaping that folder rejects the item).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clamp2_engine.music.text import MAX_TEXT_LENGTH, dedupe_lines
from clamp2_engine.paths import UnsafePathError, safe_join
from clamp2_engine.train.data import (
    EpochDataset,
    batch_of,
    crop,
    music_ids,
    pad_stack,
    read_music,
    remove_instrument_info,
    with_substitutes,
)

NOT_METADATA = ("summary_en", "summary_nen", "filepaths")


@dataclass(frozen=True)
class PairItem:
    """One validated item: its music files and the texts it can be described by."""

    source: str  # "items.jsonl:LINE"
    key: str  # the first file's name up to its first ".", as evaluation pairs features
    files: tuple[Path, ...]
    metadata: tuple[str, ...]  # metadata lines, de-duplicated, first occurrence kept
    summaries_en: tuple[str, ...]
    summaries_nen: tuple[str, ...]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _nen(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        text = v.get("summary") if isinstance(v, dict) else v
        if isinstance(text, str) and text.strip():
            out.append(text)
    return out


def parse_item(obj: Any, root: Path, source: str) -> PairItem:
    """Validate one JSON object; raises ``ValueError`` with a readable reason."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    paths = obj.get("filepaths")
    paths = [paths] if isinstance(paths, str) else paths
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise ValueError("'filepaths' must be a non-empty list of paths relative to the JSONL's folder")
    files = []
    for rel in paths:
        try:
            path = safe_join(root, rel)
        except UnsafePathError as exc:
            raise ValueError(str(exc)) from None
        if path.is_file():
            files.append(path)
    if not files:
        raise ValueError(f"none of its filepaths exists under {root}: {', '.join(paths[:3])}")
    meta_lines: list[str] = []
    for key, value in obj.items():
        if key not in NOT_METADATA:
            meta_lines.extend(_strings(value))
    metadata = tuple(dedupe_lines("\n".join(meta_lines)))
    en = tuple(s for s in _strings(obj.get("summary_en")) if s.strip())
    nen = tuple(_nen(obj.get("summary_nen")))
    if not (metadata or en or nen):
        raise ValueError("no text: no metadata string, summary_en or summary_nen")
    key = files[0].name.split(".")[0]
    return PairItem(source, key, tuple(files), metadata, en, nen)


def load_pairs(path: str | os.PathLike) -> tuple[list[PairItem], list[tuple[str, str]]]:
    """The valid items of a JSONL file and ``(source, reason)`` for each rejected line."""
    from clamp2_engine.jsonl import iter_jsonl

    path = Path(path)
    items, errors = [], []
    try:
        for n, obj, reason in iter_jsonl(path):
            source = f"{path}:{n}"
            if obj is None:
                errors.append((source, str(reason)))
                continue
            try:
                items.append(parse_item(obj, path.parent, source))
            except ValueError as exc:
                errors.append((source, str(exc)))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    return items, errors


def choose_text(item: PairItem, rng: random.Random, train: bool, text_dropout: bool, sep: str) -> str:
    """The reference's text: in training with text dropout, p=0.5 a shuffled random subset (each line
    kept with p=0.5; all when none) of the metadata joined with ``sep``, otherwise the English or (50/50)
    a non-English summary; without dropout or in evaluation the (first) English summary."""
    summaries = item.summaries_en or item.summaries_nen
    if train and text_dropout:
        if item.metadata and (not summaries or rng.random() < 0.5):
            chosen = [line for line in item.metadata if rng.random() < 0.5] or list(item.metadata)
            rng.shuffle(chosen)
            return sep.join(chosen)
        pool = item.summaries_en if rng.random() < 0.5 else item.summaries_nen
        return rng.choice(pool or summaries)
    return summaries[0] if summaries else sep.join(item.metadata)


def pick_file(item: PairItem, rng: random.Random, train: bool) -> Path:
    """A random file in training; in evaluation the ``.abc`` (else the first file)."""
    if train:
        return rng.choice(item.files)
    return next((f for f in item.files if f.suffix.lower() == ".abc"), item.files[0])


class PairDataset(EpochDataset):
    """Items -> (text token ids, music patch ids), with the reference's training randomness."""

    def __init__(
        self,
        items: list[PairItem],
        tokenizer: Any,
        *,
        train: bool,
        patch_size: int,
        patch_length: int,
        max_text_length: int = MAX_TEXT_LENGTH,
        text_dropout: bool = True,
        keep_instruments: float = 0.1,
        seed: int = 0,
    ):
        super().__init__(train, seed)
        self.items = items
        self.tokenizer = tokenizer
        self.patch_size, self.patch_length = patch_size, patch_length
        self.max_text_length, self.text_dropout, self.keep_instruments = (
            max_text_length,
            text_dropout,
            keep_instruments,
        )

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int, rng: random.Random) -> dict[str, np.ndarray]:
        item = self.items[index]
        text = choose_text(item, rng, self.train, self.text_dropout, self.tokenizer.sep_token)
        ids = np.asarray(self.tokenizer(text)["input_ids"], dtype=np.int64)
        ids = crop(ids, self.max_text_length, rng, self.train)
        path = pick_file(item, rng, self.train)
        music = read_music(path)
        if self.train and rng.random() >= self.keep_instruments:
            music = remove_instrument_info(music)
        patches = music_ids(music, self.patch_size, self.patch_length, rng, self.train)
        return {"text": ids, "music": patches}

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        sample, errors = with_substitutes(
            len(self.items), index, lambda j: self.load(j, rng), lambda j: self.items[j].source
        )
        return {**sample, "errors": errors}


class PairCollate:
    """Batch texts (padded with the tokenizer's pad id) and music (padded with 0), with masks."""

    def __init__(self, text_pad_id: int):
        self.text_pad_id = text_pad_id

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        text, text_masks = pad_stack([b["text"] for b in batch], self.text_pad_id)
        music, music_masks = pad_stack([b["music"] for b in batch], 0)
        return batch_of(batch, text=text, text_masks=text_masks, music=music, music_masks=music_masks)
