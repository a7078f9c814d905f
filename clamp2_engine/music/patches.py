"""M3 patches: interleaved ABC and MTF text to ``[n, patch_size]`` id arrays, exactly as the reference.

ABC: one patch per information-field line, otherwise one per bar (delimiters kept).
MTF: consecutive messages of the same type share a patch while it fits.
Ids: pad 0, bos 1, eos 2, mask 3; characters are their code points (ASCII after ``unidecode``).
"""

from __future__ import annotations

import re

import numpy as np
from unidecode import unidecode

PAD_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3
ALPHABET = 128
PATCH_SIZE = 64
PATCH_LENGTH = 512

DELIMITERS = ("|:", "::", ":|", "[|", "||", "|]", "|")
_BAR_SPLIT = re.compile("(" + "|".join(map(re.escape, DELIMITERS)) + ")")


def is_mtf(text: str) -> bool:
    """True when ``text`` is MIDI Text Format (first word ``ticks_per_beat``)."""
    return text.lstrip("\ufeff").split(" ", 1)[0].split("\n", 1)[0] == "ticks_per_beat"


def split_bars(line: str) -> list[str]:
    """Split one ABC body line into bars, each ending with its barline; the reference's pairing."""
    parts = [p for p in _BAR_SPLIT.split(line) if p]
    if parts and parts[0] in DELIMITERS:
        if len(parts) < 2:
            return []
        parts = [parts[0] + parts[1], *parts[2:]]
    return [parts[2 * i] + parts[2 * i + 1] for i in range(len(parts) // 2)]


def split_patches(text: str, patch_size: int = PATCH_SIZE) -> list[str]:
    """The patch strings of an interleaved ABC or MTF text (no special patches)."""
    text = text if text.isascii() else unidecode(text)  # ASCII is its own transliteration
    *body, last = text.split("\n")  # the reference's lines: each with its newline, the last without
    lines = [ln + "\n" for ln in body] + ([last] if last else [])
    if not lines:
        return []
    patches: list[str] = []
    if lines[0].split(" ")[0] == "ticks_per_beat":
        patch = ""
        for line in lines:
            head, _, rest = line.partition(" ")
            if patch.startswith(head) and len(patch) + len(rest) <= patch_size - 2:
                patch = patch[:-1] + "\t" + rest
            else:
                if patch:
                    patches.append(patch)
                patch = line
        if patch:
            patches.append(patch)
        return patches
    for line in lines:
        if len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%")):
            patches.append(line)
        else:
            bars = split_bars(line)
            if bars:
                bars[-1] += "\n"
                patches.extend(bars)
    return patches


def patch_to_ids(patch: str, patch_size: int = PATCH_SIZE) -> list[int]:
    """``[bos] + code points + [eos]``, cut to ``patch_size`` and padded with 0."""
    ids = [BOS_ID, *map(ord, patch), EOS_ID][:patch_size]
    return ids + [PAD_ID] * (patch_size - len(ids))


def ids_to_patch(ids) -> str:
    """Inverse of :func:`patch_to_ids` for ordinary characters (special ids dropped)."""
    return "".join(chr(int(i)) for i in ids if int(i) > MASK_ID)


def special_patches(patch_size: int = PATCH_SIZE) -> tuple[list[int], list[int]]:
    """The begin and end patches the reference wraps every piece in."""
    return patch_to_ids(chr(BOS_ID) * patch_size, patch_size), patch_to_ids(
        chr(EOS_ID) * patch_size, patch_size
    )


def patches_to_ids(patches: list[str], patch_size: int = PATCH_SIZE) -> np.ndarray:
    """``[n, patch_size]`` uint8 ids of ``patches``, built from one byte buffer (no Python list per patch):
    what :func:`patch_to_ids` gives each, row by row. ``ValueError`` for a character outside the
    128-symbol alphabet."""
    try:
        data = np.frombuffer("".join(patches).encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        raise ValueError("character outside the 128-symbol M3 alphabet") from None
    n = len(patches)
    lengths = np.fromiter(map(len, patches), dtype=np.int64, count=n)
    out = np.zeros((n, patch_size), dtype=np.uint8)
    out[:, 0] = BOS_ID
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(data)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1
    kept = cols < patch_size  # a patch longer than the row is cut, as the reference cuts it
    out[rows[kept], cols[kept]] = data[kept]
    ended = lengths + 1 < patch_size
    out[np.flatnonzero(ended), lengths[ended] + 1] = EOS_ID
    return out


def encode_patches(text: str, patch_size: int = PATCH_SIZE, add_special_patches: bool = True) -> np.ndarray:
    """Patch ids ``[n, patch_size]`` (int64) for ``text``; raises ``ValueError`` when it has no patch."""
    patches = split_patches(text, patch_size)
    if not patches:
        raise ValueError("no musical content: the text has no ABC bar, field or MTF message")
    ids = patches_to_ids(patches, patch_size)
    if add_special_patches:
        bos, eos = special_patches(patch_size)
        ids = np.concatenate([np.asarray([bos], dtype=np.uint8), ids, np.asarray([eos], dtype=np.uint8)])
    return ids.astype(np.int64)
