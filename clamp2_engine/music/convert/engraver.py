"""Scores to MIDI through Verovio (C++): about 4x faster than music21's parse and render, and normalised to
the conventions of music21's rendering, which the engine used before (its MTF is what collections hold):

- 10,080 ticks per beat (Verovio writes 120: every time is scaled by 84);
- a note ends with ``note_off`` at its full length (Verovio: ``note_on`` velocity 0, one tick early);
- key and time signatures and tempi in the conductor track (Verovio repeats them in every part track);
- every part track opens with its name, ``pitchwheel`` 0 and ``program_change`` (Verovio writes the
  program only for parts that name an instrument).

On Bach's chorales in music21's corpus the MTF of both has the same notes (onset, duration, pitch) and
patch counts within 5% (``benchmarks/bench_engraver.py``). Where Verovio fails the caller falls back to
music21 and says so.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterable, Iterator

import mido

from .common import ConversionError

TICKS_PER_BEAT = 10080  # music21's
CONDUCTOR = frozenset({"key_signature", "time_signature", "set_tempo"})

_local = threading.local()


def toolkit():
    """This thread's Verovio toolkit, set up for MIDI (no page layout) and quiet."""
    tk = getattr(_local, "toolkit", None)
    if tk is None:
        import verovio

        verovio.enableLog(verovio.LOG_OFF)
        tk = verovio.toolkit()
        tk.setOptions({"breaks": "none", "xmlIdSeed": 1})
        _local.toolkit = tk
    return tk


def render_midi(data: str) -> mido.MidiFile:
    """The MIDI of a score (MusicXML, MEI or Humdrum text), in music21's conventions;
    :class:`ConversionError` (stage ``verovio``) when Verovio cannot read it or it has no notes."""
    tk = toolkit()
    try:
        loaded = tk.loadData(data)
        encoded = tk.renderToMIDI() if loaded else ""
    except Exception as exc:  # the bindings raise plain exceptions on odd input
        raise ConversionError("verovio", f"{type(exc).__name__}: {exc}") from exc
    if not loaded:
        raise ConversionError("verovio", "Verovio could not read the score")
    try:
        mid = mido.MidiFile(file=io.BytesIO(base64.b64decode(encoded)))
    except Exception as exc:
        raise ConversionError("verovio", f"Verovio wrote no readable MIDI: {type(exc).__name__}") from exc
    out = normalize(mid)
    if not any(m.type == "note_on" for track in out.tracks for m in track):
        raise ConversionError("verovio", "Verovio's MIDI has no notes")
    return out


def render_midi_bytes(data: str) -> bytes:
    """:func:`render_midi` as standard MIDI file bytes."""
    buffer = io.BytesIO()
    render_midi(data).save(file=buffer)
    return buffer.getvalue()


def _absolute(track: Iterable[mido.Message]) -> Iterator[tuple[int, mido.Message]]:
    t = 0
    for msg in track:
        t += msg.time
        yield t, msg


def _track(events: list[tuple[int, mido.Message]]) -> mido.MidiTrack:
    out, last = mido.MidiTrack(), 0
    for t, msg in events:
        msg.time = t - last
        out.append(msg)
        last = t
    return out


def normalize(mid: mido.MidiFile) -> mido.MidiFile:
    """Verovio's MIDI in music21's conventions (see the module's note): a new file, made of ``mid``'s
    messages (their times changed: ``mid`` is spent)."""
    if TICKS_PER_BEAT % mid.ticks_per_beat:
        raise ConversionError("verovio", f"unexpected {mid.ticks_per_beat} ticks per beat")
    scale = TICKS_PER_BEAT // mid.ticks_per_beat
    conductor: list[tuple[int, mido.Message]] = []
    seen: set[tuple] = set()
    parts: list[list[tuple[int, mido.Message]]] = []
    for index, track in enumerate(mid.tracks):
        events: list[tuple[int, mido.Message]] = []
        channel, has_program = None, False
        for t, msg in _absolute(track):
            if msg.type == "end_of_track":
                continue
            if index == 0 or msg.type in CONDUCTOR:
                key = (t, msg.type, *msg.dict().values())
                if key not in seen:  # once, whichever tracks repeat it
                    seen.add(key)
                    conductor.append((t * scale, msg))
                continue
            if msg.type in ("note_on", "note_off") and (msg.type == "note_off" or msg.velocity == 0):
                msg = mido.Message("note_off", channel=msg.channel, note=msg.note, velocity=0)
                t += 1  # Verovio ends a note one of its ticks early
            if not msg.is_meta:
                channel = msg.channel if channel is None else channel
                has_program = has_program or msg.type == "program_change"
            events.append((t * scale, msg))
        if index == 0:
            continue
        if channel is not None:  # the preamble music21 writes: pitchwheel 0, then the program
            preamble = [mido.Message("pitchwheel", channel=channel, pitch=0)]
            if not has_program:
                preamble.append(mido.Message("program_change", channel=channel, program=0))
            at = next((i for i, (_t, m) in enumerate(events) if m.type == "program_change"), None)
            if at is None:
                at = next(i for i, (_t, m) in enumerate(events) if not m.is_meta)
            events[at:at] = [(events[at][0], m) for m in preamble]
        # at one tick: meta first, then note ends before note starts (as music21 writes them)
        events.sort(key=lambda e: (e[0], not e[1].is_meta, e[1].type == "note_on"))
        parts.append(events)
    out = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor.sort(key=lambda e: e[0])
    out.tracks.append(_track(conductor))
    out.tracks.extend(_track(events) for events in parts)
    return out


def note_events(mid: mido.MidiFile) -> list[tuple[int, int, int]]:
    """(onset, duration, pitch) of every note of ``mid``, in ticks, sorted: what two renderings of a score
    are compared by."""
    out = []
    for track in mid.tracks:
        t, sounding = 0, {}
        for msg in track:
            t += msg.time
            if msg.type == "note_on" and msg.velocity:
                sounding.setdefault((msg.channel, msg.note), []).append(t)
            elif msg.type in ("note_on", "note_off") and sounding.get((msg.channel, msg.note)):
                start = sounding[(msg.channel, msg.note)].pop(0)
                out.append((start, t - start, msg.note))
    return sorted(out)
