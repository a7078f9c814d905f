"""What an interleaved ABC header says: its voices, fields, meter and key signature."""

from __future__ import annotations


def count_voices(abc: str) -> int:
    """Voices declared in an interleaved ABC header (``V:`` lines); 1 when none."""
    return max(1, sum(1 for line in abc.splitlines() if line.startswith("V:")))


def header_field(abc: str, name: str) -> str | None:
    """The value of the first ``NAME:`` line of an ABC header (before the first voice line)."""
    for line in abc.splitlines():
        if line.startswith(("[V:", "V:")):
            break
        if line.startswith(f"{name}:"):
            return line[len(name) + 1 :].strip() or None
    return None


def abc_meter(abc: str) -> str | None:
    """The meter of an ABC header (``C`` is 4/4, ``C|`` 2/2); ``None`` when free or absent."""
    value = header_field(abc, "M")
    if not value or value.lower() == "none":
        return None
    return {"C": "4/4", "C|": "2/2"}.get(value, value)


def abc_key_sharps(abc: str) -> int | None:
    """Sharps (negative: flats) of the key signature of an ABC header, read by music21's ABC parser."""
    from music21 import abcFormat

    value = header_field(abc, "K")
    if not value:
        return None
    try:
        field = abcFormat.ABCMetadata(f"K:{value}")
        field.preParse()
        return int(field.getKeySignatureParameters()[0])
    except Exception:  # an unusual K: field: the key is simply not described
        return None
