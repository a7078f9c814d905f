"""A piece's MIDI as sound every browser plays: MP3, mono, synthesized by ``tinysoundfont`` with a
General MIDI SoundFont (``$CLAMP2_SOUNDFONT``, else the ``TimGM6mb.sf2`` that ``pretty-midi`` ships), in
a worker process with a time limit (:mod:`clamp2_engine.serve.render`), cached on disk. Needs the
``[audio]`` extra; without it, or without a SoundFont, :func:`unavailable` says why and the page shows
no player.
"""

from __future__ import annotations

import importlib.util
import io
import os
import tempfile
from pathlib import Path

SAMPLE_RATE = 22050
MAX_SECONDS = 900.0  # a longer piece is cut (a quarter of an hour of sound)
TAIL_SECONDS = 1.5  # let the last notes ring


def soundfont() -> Path | None:
    """The General MIDI SoundFont to play with: ``$CLAMP2_SOUNDFONT``, else pretty-midi's TimGM6mb."""
    given = os.environ.get("CLAMP2_SOUNDFONT")
    if given:
        return Path(given) if Path(given).is_file() else None
    spec = importlib.util.find_spec("pretty_midi")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "TimGM6mb.sf2"
        if path.is_file():
            return path
    return None


def unavailable() -> str | None:
    """Why this server cannot play pieces, or ``None`` when it can."""
    missing = [m for m in ("tinysoundfont", "soundfile") if importlib.util.find_spec(m) is None]
    if missing:
        return f"audio needs the [audio] extra (not installed: {', '.join(missing)})"
    if soundfont() is None:
        where = os.environ.get("CLAMP2_SOUNDFONT")
        return (
            f"no SoundFont at $CLAMP2_SOUNDFONT ({where})"
            if where
            else "no General MIDI SoundFont (pretty-midi)"
        )
    return None


def synthesize(midi: bytes) -> bytes:
    """MIDI file bytes as MP3 bytes, played through the SoundFont (in a worker: see ``render.sound``)."""
    import mido
    import numpy as np
    import soundfile
    import tinysoundfont

    seconds = min(MAX_SECONDS, mido.MidiFile(file=io.BytesIO(midi)).length + TAIL_SECONDS)
    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(str(soundfont()))
    for channel in range(16):  # General MIDI's defaults, for files that never change program
        synth.program_select(channel, sfid, 128 if channel == 9 else 0, 0, is_drums=channel == 9)
    sequencer = tinysoundfont.Sequencer(synth)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "piece.mid"
        path.write_bytes(midi)
        sequencer.midi_load(str(path))
    frames = int(seconds * SAMPLE_RATE)
    stereo = np.frombuffer(synth.generate(frames), dtype=np.float32).reshape(-1, 2)
    mono = stereo.mean(axis=1)
    peak = float(np.abs(mono).max()) if mono.size else 0.0
    if peak == 0.0:
        raise ValueError("the piece has no notes to play")
    out = io.BytesIO()
    soundfile.write(out, mono * (0.89 / peak), SAMPLE_RATE, format="MP3")
    return out.getvalue()
