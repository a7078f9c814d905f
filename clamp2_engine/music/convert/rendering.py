"""Score -> MIDI: which renderer makes a score's MIDI. MusicXML, MEI, and interleaved ABC through abc2xml,
are rendered by Verovio in music21's conventions (:mod:`.engraver`, 4-5x faster than music21, the same
notes on Bach's chorales); music21 renders where Verovio fails (said as a note), when asked for
(``renderer="music21"``: as the reference renders scores) and for every other format."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Callable
from pathlib import Path

from clamp2_engine.types import MEI_SUFFIXES

from . import abctools, m21
from .common import ConversionError, Piece, first_success
from .musicxml import repair_for_music21

_INLINE_VOICE = re.compile(r"\[V:\s*([^\]\s]+)")


def _interleaved(tune: str) -> bool:
    """Voices interleaved bar by bar (``[V:1]...|[V:2]...|``): more than one inline voice."""
    return len(set(_INLINE_VOICE.findall(tune))) > 1


def _has_verovio() -> bool:
    return importlib.util.find_spec("verovio") is not None


def abc_tune_to_midi(tune: str, renderer: str = "verovio") -> tuple[bytes, tuple[str, ...]]:
    """MIDI for one ABC tune, and notes: music21's ABC reader, else abc2xml and music21's MusicXML
    reader. Voices interleaved bar by bar (``[V:1]...|[V:2]...|``, as model input and xml2abc write
    them) go through abc2xml first: music21's ABC reader makes no measures of them, and rendering fails
    (every piece of the bench corpus, 40% of its rendering time spent failing); that MusicXML is rendered
    by Verovio in music21's conventions (5x faster than music21 on the bench corpus, the same notes on
    59 of its 60 pieces), by music21 where Verovio fails or ``renderer="music21"`` (said as a note)."""
    xml = functools.cache(lambda: abctools.abc2xml(tune)[0])
    via_music21 = lambda: m21.stream_to_midis(m21.parse_text(tune, "abc"))[0]  # noqa: E731
    via_abc2xml = lambda: m21.stream_to_midis(m21.parse_xml(xml().encode()))[0]  # noqa: E731
    attempts = [("", via_music21), ("abc2xml", via_abc2xml)]
    if _interleaved(tune):
        attempts = [(MUSIC21_FALLBACK, via_abc2xml), (f"{MUSIC21_FALLBACK}, music21 ABC", via_music21)]
        if renderer != "music21" and _has_verovio():
            from . import engraver

            attempts.insert(0, ("", lambda: ("", engraver.render_midi_bytes(xml()), ())))
        else:
            attempts = [("", via_abc2xml), ("music21 ABC", via_music21)]
    rendered, fallback = first_success(attempts)
    _sfx, midi, notes = rendered  # type: ignore[misc]
    return midi, tuple(fallback) + notes


def musicxml_to_midis(xml: bytes, renderer: str = "verovio", mtf: bool = False) -> list[Piece]:
    """The MIDI (as Latin-1 text; with ``mtf``, its M3-compatible MTF) of every score in MusicXML:
    Verovio's rendering in music21's conventions (:mod:`.engraver`, about 4x faster); where Verovio fails,
    music21's, with a note saying why (``renderer="music21"``: music21's at once, as the reference
    renders scores). A document music21 cannot read for its harmony annotations or accidentals is read
    without the annotations and with plain accidentals (MIDI sounds neither the one nor the difference)."""

    def repaired() -> list[tuple[str, bytes, tuple[str, ...]]]:
        fixed = repair_for_music21(xml)
        if fixed is None:
            raise ConversionError("skip", "nothing to repair")
        return m21.stream_to_midis(m21.parse_xml(fixed))

    by_music21 = [
        ("", lambda: m21.stream_to_midis(m21.parse_xml(xml))),
        ("without harmony annotations", repaired),
    ]
    return _rendered(xml, by_music21, renderer, mtf)


def is_mei(path: str | os.PathLike | None) -> bool:
    return path is not None and Path(path).suffix.lower() in MEI_SUFFIXES


_MEI_ROOT = re.compile(r"<(?:[\w-]+:)?mei[\s>]")


def mei_to_midis(
    data: bytes, path: str | os.PathLike, renderer: str = "verovio", mtf: bool = False
) -> list[Piece]:
    """The MIDI (or MTF) of an MEI file: Verovio's rendering in music21's conventions (it reads MEI 3 to 5;
    music21's reader failed on 339 of the 410 chorales Verovio wrote as MEI 5, and Verovio's notes equal
    music21's rendering of their MusicXML on 402, `bench_engraver.py`), music21's where Verovio fails,
    the file is no MEI document, or ``renderer="music21"``."""
    by_music21 = [("", lambda: m21.stream_to_midis(m21.parse_path(path)))]
    head = data[:4096].decode("utf-8", "replace")
    return _rendered(data, by_music21, renderer, mtf, bool(_MEI_ROOT.search(head)) or "not an MEI document")


def _rendered(
    score: bytes,
    by_music21: list[tuple[str, Callable[[], list[tuple[str, bytes, tuple[str, ...]]]]]],
    renderer: str,
    mtf: bool,
    verovio_reads: bool | str = True,
) -> list[Piece]:
    """Verovio's rendering of ``score``, else the first of ``by_music21``'s attempts that works, with notes
    saying so (``verovio_reads``: why Verovio is not tried, when it is a reason); MIDI as Latin-1 text, or
    its MTF."""
    from .mtf import midi_to_mtf, mido_to_mtf

    def engraved() -> list[tuple[str, bytes | str, tuple[str, ...]]]:
        from . import engraver

        if renderer == "music21":
            raise ConversionError("skip", "music21 asked for")
        if not _has_verovio():
            raise ConversionError("verovio", "not installed (pip install 'clamp2-engine[convert]')")
        if verovio_reads is not True:
            raise ConversionError("verovio", str(verovio_reads))
        text = _score_text(score)
        if text is None:
            raise ConversionError("skip", "not UTF-8 or UTF-16 (music21 reads its declared encoding)")
        if mtf:  # straight from the MIDI Verovio made: no bytes written and read again
            return [("", mido_to_mtf(engraver.render_midi(text)), ())]
        return [("", engraver.render_midi_bytes(text), ())]

    try:
        rendered, fallback = engraved(), []
    except ConversionError as exc:  # music21, saying why
        fallback = [] if renderer == "music21" else [MUSIC21_FALLBACK]
        fallback += [] if exc.stage == "skip" else [f"Verovio: {exc.reason}"]
        rendered, taken = first_success(by_music21)  # type: ignore[arg-type]
        fallback += taken
        if mtf:
            rendered = [(s, midi_to_mtf(m), n) for s, m, n in rendered]  # type: ignore[union-attr,arg-type]
    out = [(s, m if isinstance(m, str) else m.decode("latin-1"), n) for s, m, n in rendered]  # type: ignore[union-attr]
    return [Piece(s, m, tuple(fallback) + n) for s, m, n in out]


MUSIC21_FALLBACK = "rendered with music21"


def renderer_of(
    kind: str, tune: str | None, notes: tuple[str, ...], source: str | os.PathLike | None = None
) -> str:
    """Which renderer made a score's MIDI, by its notes: music21 where one says so, else Verovio for
    MusicXML, MEI (``source``'s suffix) and interleaved ABC (when installed), music21 for the rest.
    Humdrum stays with music21: on music21's Humdrum corpus Verovio lost notes of several-spine quartets
    (up to 68%)."""
    if any(note.startswith(MUSIC21_FALLBACK) for note in notes):
        return "music21"
    engraved = kind == "musicxml" or is_mei(source) or (kind == "abc" and _interleaved(tune or ""))
    return "Verovio" if engraved and _has_verovio() else "music21"


def _score_text(xml: bytes) -> str | None:
    """A score file as text for Verovio: UTF-16 by its byte order mark, else UTF-8 (None when it is
    neither: music21 then reads the encoding it declares)."""
    if xml.startswith((b"\xff\xfe", b"\xfe\xff")):
        return xml.decode("utf-16")
    try:
        return xml.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
