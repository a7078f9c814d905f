"""music21 behind small functions: parse a file or text, export MusicXML, render MIDI; quietly, with
every library error turned into a :class:`ConversionError`."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from xml.etree import ElementTree

from .common import ConversionError


@contextlib.contextmanager
def _quiet():
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield


def parse_path(path: str | os.PathLike):
    """A music21 stream for a file (no pickle cache read or written)."""
    from music21 import converter

    try:
        with _quiet():
            conv = converter.Converter()
            conv.parseFile(Path(path), forceSource=True, storePickle=False)
            return conv.stream
    except ElementTree.ParseError as exc:
        raise ConversionError("xml", f"malformed XML: {exc}", final=True) from exc
    except Exception as exc:
        raise ConversionError("music21", f"{type(exc).__name__}: {exc}") from exc


def parse_text(text: str, fmt: str):
    """A music21 stream for text in format ``fmt`` (e.g. ``"abc"``)."""
    from music21 import converter

    try:
        with _quiet():
            return converter.parseData(text, format=fmt)
    except Exception as exc:
        raise ConversionError("music21", f"{type(exc).__name__}: {exc}") from exc


def parse_xml(xml: bytes):
    """A music21 stream for MusicXML bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "score.musicxml"
        path.write_bytes(xml)
        return parse_path(path)


def scores(stream) -> list:
    """The scores of a stream: those of an Opus, else the stream itself."""
    from music21 import stream as m21stream

    if isinstance(stream, m21stream.Opus):
        found = list(stream.scores)
        if not found:
            raise ConversionError("music21", "empty opus")
        return found
    return [stream]


def suffixes(n: int) -> list[str]:
    """Output name suffixes for ``n`` pieces of one file: ``[""]`` or ``_1`` ... ``_n`` (zero-padded)."""
    width = len(str(n))
    return [""] if n == 1 else [f"_{i:0{width}d}" for i in range(1, n + 1)]


def export_musicxml(score) -> bytes:
    """music21's MusicXML export of a score."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    try:
        with _quiet():
            return GeneralObjectExporter(score).parse()
    except Exception as exc:
        raise ConversionError("music21", f"MusicXML export: {type(exc).__name__}: {exc}") from exc


def render_midi(score) -> bytes:
    """music21's MIDI rendering of a score (standard MIDI file bytes)."""
    from music21 import midi

    try:
        with _quiet():
            return midi.translate.music21ObjectToMidiFile(score).writestr()
    except Exception as exc:
        raise ConversionError("render", f"{type(exc).__name__}: {exc}") from exc


UNEXPANDED = "rendered without expanding its repeats (music21: badly formed repeats)"


def render_as_written(score) -> tuple[bytes, tuple[str, ...]]:
    """:func:`render_midi`; a score whose repeats music21 cannot expand (an ending repeat sign with no
    start, as Humdrum chorales write ``=:|!``) is rendered as written, once, with a note saying so."""
    try:
        return render_midi(score), ()
    except ConversionError as exc:
        if "ExpanderException" not in exc.reason:
            raise
    return render_midi(without_repeats(score)), (UNEXPANDED,)


def without_repeats(score):
    """The score (changed in place) without repeat barlines, voltas and repeat expressions."""
    from music21 import bar, repeat, spanner

    for measure in score.recurse().getElementsByClass("Measure"):
        for side in ("leftBarline", "rightBarline"):
            line = getattr(measure, side)
            if isinstance(line, bar.Repeat):
                setattr(measure, side, None if side == "leftBarline" else bar.Barline(line.type))
    for element in list(score.recurse().getElementsByClass(repeat.RepeatExpression)):
        element.activeSite.remove(element)
    for bracket in list(score.recurse().getElementsByClass(spanner.RepeatBracket)):
        bracket.activeSite.remove(bracket)
    return score


def stream_to_midis(stream) -> list[tuple[str, bytes, tuple[str, ...]]]:
    """Standard MIDI file bytes for each score of a music21 stream (an Opus gives several), each with
    notes on how it was made."""
    parts = scores(stream)
    return [(sfx, *render_as_written(s)) for sfx, s in zip(suffixes(len(parts)), parts, strict=True)]
