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
SHORT_PATCHES = 32  # mean characters per patch up to which rows are built by padding strings

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


_BAR_AT_LINE_END = re.compile(r"(\|[:|\]]?\n?|::\n?|:\|\n?|\[\|\n?)")  # a barline, with the newline ending it
_FIELD_AFTER_NEWLINE = re.compile(r"\n(?:[A-Za-z]:|%%)")


def _is_field(line: str) -> bool:
    """An information field or a ``%%`` directive: the reference's test for a whole-line patch."""
    return len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%"))


def _lines(text: str) -> list[str]:
    """The reference's lines: each with its newline, the last without (none when empty)."""
    *body, last = text.split("\n")
    return [ln + "\n" for ln in body] + ([last] if last else [])


def _abc_line_patches(lines: list[str]) -> list[str]:
    """ABC patches line by line, the reference's rule as it states it."""
    patches: list[str] = []
    for line in lines:
        if _is_field(line):
            patches.append(line)
        else:
            bars = split_bars(line)
            if bars:
                bars[-1] += "\n"
                patches.extend(bars)
    return patches


def _regular_bars(body: str) -> list[str] | None:
    """The bars of a body whose every line is bars each closed by a barline (what interleaved ABC is),
    cut with one split of the whole body; ``None`` where a line is anything else (a field, a line that
    starts with a barline or has two in a row, text after its last barline): the caller then goes line
    by line. Each bar is its text and its barline, the last of a line with its newline, as the reference."""
    parts = _BAR_AT_LINE_END.split(body)
    texts = parts[0::2]  # text before each barline; the last: what follows the last barline
    if "" in texts[:-1] or "\n" in "".join(texts[:-1]) or "\n" in texts[-1].rstrip("\n"):
        return None
    if _FIELD_AFTER_NEWLINE.search(body):
        return None
    bars = list(map(str.__add__, texts, parts[1::2]))
    if bars and not bars[-1].endswith("\n"):
        bars[-1] += "\n"  # the body's last line: what followed its last barline is dropped, as a line's
    return bars


def _abc_patches(text: str) -> list[str]:
    patches: list[str] = []
    pos, n = 0, len(text)
    while pos < n:  # the header: information fields, one patch each
        end = text.find("\n", pos)
        end = n if end < 0 else end + 1
        if not _is_field(text[pos:end]):
            break
        patches.append(text[pos:end])
        pos = end
    if pos < n:
        body = text[pos:]
        bars = _regular_bars(body)
        patches.extend(_abc_line_patches(_lines(body)) if bars is None else bars)
    return patches


def _mtf_patches(lines: list[str], patch_size: int) -> list[str]:
    """MTF patches: consecutive messages of one type share a patch while it fits."""
    patches: list[str] = []
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


def _split(text: str, patch_size: int) -> tuple[list[str], bool]:
    """The patch strings and whether the text is MTF (the reference's test on its first line)."""
    text = text if text.isascii() else unidecode(text)  # ASCII is its own transliteration
    nl = text.find("\n")
    first = text if nl < 0 else text[: nl + 1]  # with its newline, as the reference's first line
    if first.split(" ", 1)[0] == "ticks_per_beat":
        return _mtf_patches(_lines(text), patch_size), True
    return _abc_patches(text), False


def split_patches(text: str, patch_size: int = PATCH_SIZE) -> list[str]:
    """The patch strings of an interleaved ABC or MTF text (no special patches)."""
    return _split(text, patch_size)[0]


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


def _rows_by_padding(patches: list[str], patch_size: int, specials: bool) -> bytes:
    """Each row as a padded string, joined: for short patches (ABC bars), one C-level call per patch."""
    rows = "".join([(f"\x01{p}\x02")[:patch_size].ljust(patch_size, "\0") for p in patches])
    if specials:
        rows = "".join((chr(BOS_ID) * patch_size, rows, chr(BOS_ID) + chr(EOS_ID) * (patch_size - 1)))
    return rows.encode("ascii")


def _rows_by_scatter(patches: list[str], patch_size: int, specials: bool) -> np.ndarray:
    """Every character written to its place in one vectorised step: for long patches (MTF runs)."""
    data = np.frombuffer("".join(patches).encode("ascii"), dtype=np.uint8)
    n, skip = len(patches), int(specials)
    lengths = np.fromiter(map(len, patches), dtype=np.int64, count=n)
    out = np.zeros((n + 2 * skip) * patch_size, dtype=np.uint8)
    row_starts = np.arange(skip, n + skip) * patch_size
    out[row_starts] = BOS_ID
    dest = np.arange(len(data)) + np.repeat(row_starts + 1 - (np.cumsum(lengths) - lengths), lengths)
    if n and lengths.max() > patch_size - 2:  # a patch longer than its row is cut, as the reference cuts it
        kept = dest - np.repeat(row_starts, lengths) < patch_size
        dest, data = dest[kept], data[kept]
    out[dest] = data
    ended = lengths + 1 < patch_size
    out[(row_starts + lengths + 1)[ended]] = EOS_ID
    out = out.reshape(-1, patch_size)
    if specials:
        out[0], out[-1, 0], out[-1, 1:] = BOS_ID, BOS_ID, EOS_ID
    return out


def patches_to_ids(patches: list[str], patch_size: int = PATCH_SIZE, specials: bool = False) -> np.ndarray:
    """``[n, patch_size]`` uint8 ids of ``patches`` (with ``specials``, between the begin and end patches),
    written into one buffer (no Python list per patch): what :func:`patch_to_ids` gives each, row by row.
    ``ValueError`` for a character outside the 128-symbol alphabet."""
    try:
        if sum(map(len, patches)) <= SHORT_PATCHES * len(patches):
            rows = np.frombuffer(_rows_by_padding(patches, patch_size, specials), dtype=np.uint8)
            return rows.reshape(-1, patch_size)
        return _rows_by_scatter(patches, patch_size, specials)
    except UnicodeEncodeError:
        raise ValueError("character outside the 128-symbol M3 alphabet") from None


def encode_patches(text: str, patch_size: int = PATCH_SIZE, add_special_patches: bool = True) -> np.ndarray:
    """Patch ids ``[n, patch_size]`` for ``text``, as uint8 (ids are below 128: an eighth of int64's bytes
    to move; a runtime widens them on its device); ``ValueError`` when it has no patch."""
    patches = split_patches(text, patch_size)
    if not patches:
        raise ValueError("no musical content: the text has no ABC bar, field or MTF message")
    return patches_to_ids(patches, patch_size, specials=add_special_patches)
