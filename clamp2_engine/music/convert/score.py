"""Score files -> interleaved ABC (exactly the reference path where it works, fallbacks where it does not),
ABC -> MusicXML, and score -> MIDI: MusicXML, MEI and interleaved ABC (through abc2xml) by Verovio in
music21's conventions (:mod:`.engraver`), music21 where it fails and for the other formats."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from . import abctools, m21
from .common import DEFAULT_MAX_BYTES, ConversionError, Piece, decode_text, read_input, source_kind
from .common import first_success as _first_success
from .musicxml import (  # noqa: F401 - re-exported: the readers and repairs of MusicXML
    plain_accidentals,
    read_musicxml,
    repair_for_music21,
    sanitize_musicxml,
)
from .rendering import (  # noqa: F401
    MUSIC21_FALLBACK,
    abc_tune_to_midi,
    is_mei,
    mei_to_midis,
    musicxml_to_midis,
    renderer_of,
)

# ---------------------------------------------------------------- MusicXML


def musicxml_to_abc(
    data: bytes,
    name: str = "score",
    path: str | os.PathLike | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> list[Piece]:
    """Interleaved ABC for MusicXML/.mxl bytes: xml2abc + interleaving as the reference; then a repaired
    document; then music21's re-export of the score."""
    xml, notes = read_musicxml(data, max_bytes)

    def music21_route() -> list[Piece]:
        stream = m21.parse_path(path) if path is not None else m21.parse_xml(xml)
        return _music21_stream_to_abc(stream)

    def repaired() -> list[Piece]:
        fixed = sanitize_musicxml(xml)
        if fixed is None:
            raise ConversionError("skip", "nothing to repair")
        return [Piece("", abctools.interleave(abctools.xml2abc(fixed, name)))]

    pieces, fallback = _first_success(
        [
            ("", lambda: [Piece("", abctools.interleave(abctools.xml2abc(xml, name)))]),
            ("repaired MusicXML", repaired),
            ("music21 re-export", music21_route),
        ]
    )
    return [p._replace(notes=tuple(notes + fallback) + p.notes) for p in pieces]  # type: ignore[union-attr]


# ---------------------------------------------------------------- ABC


def _xml2abc_shaped(tune: str) -> bool:
    """True when a tune already has xml2abc's form (``L:1/8``, voices ``V:1``...): the reference
    interleaves such ABC directly."""
    return bool(re.search(r"^V:1\s*$", tune, re.M)) and bool(re.search(r"^L:1/8\s*$", tune, re.M))


def is_interleaved(tune: str) -> bool:
    """True for text that already is interleaved ABC (model input): voices declared in the header
    (``V:1 treble ...``) and every body line one bar of each of them, always in the same order
    (``[V:1]...|[V:2]...|``)."""
    lines = [line for line in tune.splitlines() if line.strip()]
    declared = [m.group(1) for line in lines if (m := re.match(r"V:(\S+)\s+\S", line))]
    body = [line for line in lines if line.startswith("[V:")]
    if not declared or not body or any(re.match(r"(X|T|w):|V:\S+\s*$", line) for line in lines):
        return False
    order = re.findall(r"\[V:([^\]]+)\]", body[0])
    return (
        sorted(order) == sorted(set(declared))
        and all(re.findall(r"\[V:([^\]]+)\]", line) == order for line in body)
        and all(line.startswith(("[V:", "%")) or re.match(r"[A-Za-z]:", line) for line in lines)
    )


def _checked(text: str) -> str:
    if not is_interleaved(text):
        raise ConversionError("interleave", "the result is not one bar of every voice per line")
    return text


def abc_tune_to_abc(tune: str) -> Piece:
    """Interleaved ABC for one ABC tune: unchanged when it already is interleaved ABC; the reference
    interleaving when it has the form xml2abc writes; else canonicalised through MusicXML (abc2xml, then
    music21) and xml2abc. Results that are not properly interleaved (hand-written voice sections the
    reference mistakes for header lines) go to the next route; the last resort keeps abc2xml's result."""
    if is_interleaved(tune):
        return Piece("", tune.replace("\r\n", "\n").replace("\r", "\n"), ("already interleaved",))

    def via_abc2xml() -> str:
        return abctools.interleave(abctools.xml2abc(abctools.abc2xml(tune)[0].encode("utf-8")))

    def via_music21() -> str:
        return _music21_stream_to_abc(m21.parse_text(tune, "abc"))[0].text

    attempts: list[tuple[str, Callable[[], object]]] = [
        ("abc2xml", lambda: _checked(via_abc2xml())),
        ("music21 ABC", lambda: _checked(via_music21())),
        ("unchecked interleaving", via_abc2xml),
    ]
    if _xml2abc_shaped(tune):
        attempts.insert(0, ("", lambda: _checked(abctools.interleave(tune))))
    text, notes = _first_success(attempts)
    return Piece("", str(text), tuple(n for n in notes if n != "abc2xml"))


def read_abc(data: bytes) -> tuple[list[tuple[str, str]], list[str]]:
    """Decode (any encoding) and split an ABC file into tunes; notes name a guessed encoding."""
    text, encoding = decode_text(data)
    tunes = abctools.split_tunes(text)
    if not tunes:
        raise ConversionError("read", "no ABC tune in the file")
    return tunes, ([] if encoding == "utf-8" else [f"decoded as {encoding}"])


def abc_to_musicxml(tune: str) -> str:
    """MusicXML for one ABC tune (standard or interleaved) via abc2xml, else music21."""

    def via_music21() -> str:
        return m21.export_musicxml(m21.parse_text(tune, "abc")).decode("utf-8")

    text, _ = _first_success([("", lambda: abctools.abc2xml(tune)[0]), ("music21 ABC", via_music21)])
    return clean_part_names(str(text))


_PART_NAME = re.compile(r"(<(part-name|part-abbreviation)(?:\s[^>]*)?>)(.*?)(</\2>)", re.S)


def clean_part_names(xml: str) -> str:
    """Staff names as a score shows them: xml2abc writes a MusicXML part name's line breaks and
    indentation into ABC (``nm="\\n\\t\\t\\t:Violin I"``), which abc2xml gives back verbatim."""

    def clean(m: re.Match) -> str:
        name = re.sub(r"(\\[nt])+", " ", m.group(3))
        return m.group(1) + " ".join(name.split()).strip(" :") + m.group(4)

    return _PART_NAME.sub(clean, xml)


# ---------------------------------------------------------------- music21 routes


def _music21_stream_to_abc(stream) -> list[Piece]:
    scores = m21.scores(stream)
    return [
        Piece(sfx, abctools.interleave(abctools.xml2abc(m21.export_musicxml(s))))
        for sfx, s in zip(m21.suffixes(len(scores)), scores, strict=True)
    ]


def music21_file_to_abc(path: str | os.PathLike) -> list[Piece]:
    """Interleaved ABC for any score music21 reads (Humdrum, MEI, RomanText, ...), via MusicXML."""
    return _music21_stream_to_abc(m21.parse_path(path))


def file_to_pieces(
    path: str | os.PathLike,
    to: str,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    failed: list[tuple[str, ConversionError]] | None = None,
    renderer: str = "verovio",
) -> list[Piece]:
    """Every piece of a score file as interleaved ABC (``to="abc"``), MIDI bytes as Latin-1 text
    (``to="midi"``; use :func:`score_midis`) or the M3-compatible MTF of that MIDI (``to="mtf"``);
    MusicXML rendered by ``renderer``, see :func:`musicxml_to_midis`. Raises :class:`ConversionError` on the first failure; with a
    ``failed`` list, a tune of a book that fails is added there as ``(suffix, error)`` and the other tunes
    go on (the error is raised only when no tune converts)."""
    kind = source_kind(path)
    if to == "mtf" and kind != "musicxml" and not is_mei(path):
        from .mtf import midi_to_mtf

        midis = file_to_pieces(path, "midi", max_bytes, failed, renderer)
        return [Piece(p.suffix, midi_to_mtf(p.text.encode("latin-1")), p.notes) for p in midis]
    data = read_input(path, max_bytes)
    if kind == "abc":
        tunes, notes = read_abc(data)
        out, errors = [], []
        for sfx, tune in tunes:
            try:
                if to == "abc":
                    piece = abc_tune_to_abc(tune)
                    out.append(Piece(sfx, piece.text, tuple(notes) + piece.notes))
                else:
                    midi, rendered = abc_tune_to_midi(tune, renderer)
                    out.append(Piece(sfx, midi.decode("latin-1"), tuple(notes) + rendered))
            except ConversionError as exc:
                if not sfx:
                    raise
                error = ConversionError(exc.stage, f"tune X:{sfx[1:]}: {exc.reason}")
                if failed is None:
                    raise error from exc
                errors.append((sfx, error))
        if errors and not out:
            raise errors[0][1]
        if failed is not None:
            failed.extend(errors)
        return out
    if kind == "musicxml":
        if to == "abc":
            return musicxml_to_abc(data, Path(path).stem, path, max_bytes)
        xml, _ = read_musicxml(data, max_bytes)
        return musicxml_to_midis(xml, renderer, mtf=to == "mtf")
    if kind == "music21":
        if to == "abc":
            return music21_file_to_abc(path)
        if is_mei(path):
            return mei_to_midis(data, path, renderer, mtf=to == "mtf")
        return [Piece(s, m.decode("latin-1"), n) for s, m, n in m21.stream_to_midis(m21.parse_path(path))]
    raise ConversionError("read", f"not a score file: {Path(path).suffix or 'no suffix'}")
