"""Turn real-world music files into CLaMP 2 model input: scores -> interleaved ABC, MIDI <-> MTF,
interleaved ABC -> MusicXML.

The reference pipeline's output is reproduced exactly where it works (xml2abc ``-d 8 -x`` and the
interleaving steps, in process); where it fails, conversion falls back instead of dropping the piece.

    >>> from clamp2_engine.music.convert import score_to_interleaved_abc, midi_to_mtf
    >>> [(suffix, abc)] = score_to_interleaved_abc("bwv66.6.mxl")
    >>> mtf = midi_to_mtf("song.mid")
"""

from __future__ import annotations

import os
from pathlib import Path

import mido

from clamp2_engine.paths import atomic_write_bytes, atomic_write_text

from .batch import EXTENSION, SOURCES, TARGETS, ConvertReport, ConvertTask, _convert, convert_tree
from .common import (
    ABC_SUFFIXES,
    DEFAULT_MAX_BYTES,
    MIDI_SUFFIXES,
    MTF_SUFFIXES,
    MUSIC21_SUFFIXES,
    MUSICXML_SUFFIXES,
    SCORE_SUFFIXES,
    ConversionError,
    source_kind,
)
from .mtf import midi_to_bytes, midi_to_mtf, mtf_to_midi
from .score import file_to_pieces, read_abc

__all__ = [
    "ABC_SUFFIXES",
    "MIDI_SUFFIXES",
    "MTF_SUFFIXES",
    "MUSIC21_SUFFIXES",
    "MUSICXML_SUFFIXES",
    "SCORE_SUFFIXES",
    "TARGETS",
    "ConversionError",
    "ConvertReport",
    "convert_file",
    "convert_tree",
    "midi_to_bytes",
    "midi_to_mtf",
    "mtf_to_midi",
    "score_to_interleaved_abc",
    "score_to_midi",
    "score_to_midis",
]


def score_to_interleaved_abc(
    path: str | os.PathLike,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    failed: list[tuple[str, ConversionError]] | None = None,
) -> list[tuple[str, str]]:
    """Interleaved ABC for a score file (MusicXML/.mxl, ABC, Humdrum, anything music21 reads):
    ``(name suffix, text)`` per piece, the suffix ``""`` for a file with one piece and e.g. ``"_12"`` for
    tune X:12 of a tune book. Raises :class:`ConversionError` (with ``stage``) when a piece fails; pass a
    ``failed`` list to collect the failed tunes of a book there and keep the others."""
    return [(p.suffix, p.text) for p in file_to_pieces(path, "abc", max_bytes, failed)]


def score_to_midis(
    path: str | os.PathLike,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    failed: list[tuple[str, ConversionError]] | None = None,
    renderer: str = "verovio",
) -> list[tuple[str, mido.MidiFile]]:
    """The MIDI rendering of every piece of a score file, as ``(name suffix, MidiFile)`` (``failed`` as in
    :func:`score_to_interleaved_abc`): MusicXML by Verovio in music21's conventions, music21 where it
    fails or ``renderer="music21"``; other scores by music21."""
    import io

    return [
        (p.suffix, mido.MidiFile(file=io.BytesIO(p.text.encode("latin-1"))))
        for p in file_to_pieces(path, "midi", max_bytes, failed, renderer)
    ]


def score_to_midi(
    path: str | os.PathLike, max_bytes: int | None = DEFAULT_MAX_BYTES, renderer: str = "verovio"
) -> mido.MidiFile:
    """The MIDI rendering of a score file with one piece (see :func:`score_to_midis`, also for books)."""
    midis = score_to_midis(path, max_bytes, renderer=renderer)
    if len(midis) != 1:
        raise ConversionError("render", f"{len(midis)} pieces in {Path(path).name}; use score_to_midis")
    return midis[0][1]


def convert_file(
    path: str | os.PathLike,
    to: str,
    *,
    m3_compatible: bool = True,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    out_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> list[tuple[str, str | bytes]]:
    """Convert one file in this process: ``(output file name, content)`` per output (text for abc, mtf
    and xml; bytes for midi). With ``out_dir`` the outputs are also written there (existing files are
    kept unless ``overwrite``). Raises :class:`ConversionError`."""
    if to not in TARGETS:
        raise ValueError(f"unknown target {to!r}; choose from {', '.join(TARGETS)}")
    path = Path(path)
    kind = source_kind(path)
    if kind not in SOURCES[to]:
        raise ConversionError("read", f"cannot convert {path.suffix or 'a file without suffix'} to {to}")
    items: list[tuple[str, str | None]] = [("", None)]
    if kind == "abc":
        from .common import read_input

        tunes, _ = read_abc(read_input(path, max_bytes))
        items = [(sfx, tune) for sfx, tune in tunes]
    ext = EXTENSION[to]
    results: list[tuple[str, str | bytes]] = []
    for sfx, tune in items:
        task = ConvertTask(
            str(path), kind, to, path.stem + sfx + ext, sfx, tune, (), m3_compatible, overwrite, max_bytes
        )
        try:
            outputs = _convert(task)
        except ConversionError as exc:
            if sfx:
                raise ConversionError(exc.stage, f"tune X:{sfx[1:]}: {exc.reason}") from exc
            raise
        results.extend((path.stem + sfx + psfx + ext, content) for psfx, content, _ in outputs)
    if out_dir is not None:
        for name, content in results:
            out = Path(out_dir) / name
            if out.exists() and not overwrite:
                continue
            atomic_write_bytes(out, content) if isinstance(content, bytes) else atomic_write_text(
                out, content
            )
    return results
