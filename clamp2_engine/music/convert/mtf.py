"""MIDI <-> MTF (MIDI Text Format), as the reference writes and reads it."""

from __future__ import annotations

import ast
import io
import os
from typing import Any

import mido

from .common import DEFAULT_MAX_BYTES, ConversionError, read_input

M3_SKIPPED_META = frozenset(
    {
        "text",
        "copyright",
        "track_name",
        "instrument_name",
        "lyrics",
        "marker",
        "cue_marker",
        "device_name",
        "sequencer_specific",
    }
)
M3_SKIPPED_MESSAGES = frozenset({"sysex"})


def msg_to_str(msg: mido.Message | mido.MetaMessage) -> str:
    """One MTF line: the values of ``msg.dict()`` in order, unicode-escaped."""
    return (
        " ".join(str(value) for value in msg.dict().values()).strip().encode("unicode_escape").decode("utf-8")
    )


def read_midi(
    source: str | os.PathLike | bytes | mido.MidiFile, max_bytes: int | None = DEFAULT_MAX_BYTES
) -> tuple[mido.MidiFile, list[str]]:
    """A parsed MIDI file and notes; out-of-range data bytes are clipped (noted) rather than refused."""
    if isinstance(source, mido.MidiFile):
        return source, []
    data = source if isinstance(source, bytes) else read_input(source, max_bytes)
    if not data:
        raise ConversionError("read", "empty MIDI data")
    try:
        return mido.MidiFile(file=io.BytesIO(data)), []
    except Exception as exc:
        first = exc
    if isinstance(first, ValueError) and "range" in str(first):
        try:
            return mido.MidiFile(file=io.BytesIO(data), clip=True), ["clipped out-of-range data bytes"]
        except Exception:
            pass
    reason = f"{type(first).__name__}: {first}" if str(first) else type(first).__name__
    if isinstance(first, EOFError):
        reason = "truncated MIDI file (unexpected end of data)"
    raise ConversionError("read", reason)


def mido_to_mtf(mid: mido.MidiFile, m3_compatible: bool = True) -> str:
    """MTF for a parsed MIDI file (see :func:`midi_to_mtf`)."""
    lines = ["ticks_per_beat " + str(mid.ticks_per_beat)]
    try:
        for msg in mid.merged_track:
            if m3_compatible and msg.type in (M3_SKIPPED_META if msg.is_meta else M3_SKIPPED_MESSAGES):
                continue
            lines.append(msg_to_str(msg))
    except Exception as exc:
        raise ConversionError("mtf", f"{type(exc).__name__}: {exc}") from exc
    return "\n".join(lines)


def midi_to_mtf(path_or_bytes: str | os.PathLike | bytes | mido.MidiFile, m3_compatible: bool = True) -> str:
    """MTF text for a MIDI file: ``ticks_per_beat N`` then one line per message of mido's merged track
    (delta times). ``m3_compatible`` drops text-like meta messages and sysex, as M3 was trained."""
    mid, _ = read_midi(path_or_bytes)
    return mido_to_mtf(mid, m3_compatible)


# ---------------------------------------------------------------- MTF -> MIDI

_FIELDS: dict[str, tuple[type, list[tuple[str, Any]]]] = {}


def _fields(msg_type: str) -> tuple[type, list[tuple[str, Any]]]:
    """The message class of a type and its ``(name, default)`` fields in ``dict()`` order."""
    if msg_type not in _FIELDS:
        try:
            proto: mido.Message | mido.MetaMessage = mido.Message(msg_type)
        except LookupError:
            proto = mido.MetaMessage(msg_type)  # raises for unknown types
        _FIELDS[msg_type] = (type(proto), [(k, v) for k, v in proto.dict().items() if k != "type"])
    return _FIELDS[msg_type]


def _tokens(rest: str) -> list[str]:
    """Space-separated values; a bracketed value (``(1, 2)``, ``[3]``) is one token."""
    out: list[str] = []
    depth, cur = 0, ""
    for ch in rest:
        if ch == " " and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += (ch in "([") - (ch in ")]")
        cur += ch
    out.append(cur)
    return out


def _number(token: str) -> int | float:
    try:
        return int(token)
    except ValueError:
        value = float(token)
        return int(value) if value.is_integer() else value


def _value(token: str, default: Any) -> Any:
    if isinstance(default, str):
        return token.encode("ascii", "backslashreplace").decode("unicode_escape")
    if token[:1] in "([":
        value = ast.literal_eval(token)
        return list(value) if token[0] == "[" else tuple(value)
    return _number(token)


def str_to_msg(line: str) -> mido.Message | mido.MetaMessage | None:
    """Rebuild one MTF line; ``unknown_meta`` lines give None."""
    msg_type, _, rest = line.partition(" ")
    if msg_type == "unknown_meta":
        return None
    cls, fields = _fields(msg_type)
    tokens = _tokens(rest) if rest else []
    extra = len(tokens) - len(fields)
    text_at = next((i for i, (_, d) in enumerate(fields) if isinstance(d, str)), None)
    if extra > 0 and text_at is not None:  # a text value that contained spaces
        tokens[text_at : text_at + extra + 1] = [" ".join(tokens[text_at : text_at + extra + 1])]
    elif extra < 0 and text_at is not None and len(tokens) == len(fields) - 1:
        tokens.insert(text_at, "")  # an empty text value
    if len(tokens) != len(fields):
        raise ValueError(f"{msg_type} needs {len(fields)} values, got {len(tokens)}")
    values = {name: _value(tok, default) for (name, default), tok in zip(fields, tokens, strict=True)}
    return cls(msg_type, **values)


MAX_TICKS_PER_BEAT = 0x7FFF  # 15 bits: a set top bit means SMPTE timing
MAX_DELTA = 0x0FFFFFFF  # the largest variable-length quantity a MIDI file may hold (4 bytes)


def mtf_to_midi(mtf_text: str) -> mido.MidiFile:
    """A one-track MIDI file from MTF text; a bad line raises :class:`ConversionError` naming it."""
    lines = [line for line in mtf_text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or not lines[0].startswith("ticks_per_beat "):
        raise ConversionError("mtf", "not MTF: the first line must be 'ticks_per_beat N'")
    try:
        ticks = int(lines[0].split()[1])
    except (ValueError, IndexError) as exc:
        raise ConversionError("mtf", f"bad ticks_per_beat line: {lines[0][:60]!r}") from exc
    if not 1 <= ticks <= MAX_TICKS_PER_BEAT:
        raise ConversionError(
            "mtf", f"ticks_per_beat {ticks} is outside 1..{MAX_TICKS_PER_BEAT} (a MIDI file cannot hold it)"
        )
    mid = mido.MidiFile(ticks_per_beat=ticks)
    track = mido.MidiTrack()
    for number, line in enumerate(lines[1:], start=2):
        try:
            msg = str_to_msg(line.strip())
        except Exception as exc:
            raise ConversionError("mtf", f"line {number} {line[:60]!r}: {type(exc).__name__}: {exc}") from exc
        if msg is not None:
            if not (isinstance(msg.time, int) and 0 <= msg.time <= MAX_DELTA):
                raise ConversionError(
                    "mtf",
                    f"line {number} {line[:60]!r}: delta time {msg.time} is outside 0..{MAX_DELTA} "
                    "(a MIDI file cannot hold it)",
                )
            track.append(msg)
    mid.tracks.append(track)
    return mid


def midi_to_bytes(mid: mido.MidiFile) -> bytes:
    """The standard MIDI file bytes of ``mid``."""
    buf = io.BytesIO()
    try:
        mid.save(file=buf)
    except Exception as exc:
        raise ConversionError("midi", f"{type(exc).__name__}: {exc}") from exc
    return buf.getvalue()
