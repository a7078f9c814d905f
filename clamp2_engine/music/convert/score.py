"""Score files -> interleaved ABC (exactly the reference path where it works, fallbacks where it does not),
ABC -> MusicXML, and score -> MIDI through music21."""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from xml.etree import ElementTree

from . import abctools, m21
from .common import DEFAULT_MAX_BYTES, ConversionError, decode_text, read_input, source_kind


class Piece(NamedTuple):
    """One converted piece: output name suffix (``""`` for the only one), its text, and notes on how it
    was made (fallbacks taken, encoding guessed)."""

    suffix: str
    text: str
    notes: tuple[str, ...] = ()


def _first_success(attempts: list[tuple[str, Callable[[], object]]]) -> tuple[object, list[str]]:
    """Run ``(note, fn)`` attempts in order; return the first result and the notes of the fallback taken.
    When all fail, raise the first failure with the others' reasons appended."""
    errors: list[tuple[str, ConversionError]] = []
    for note, fn in attempts:
        try:
            return fn(), ([note] if note else [])
        except ConversionError as exc:
            if exc.stage != "skip":  # "skip": the attempt does not apply to this input
                errors.append((note, exc))
            if exc.final:
                break
        except Exception as exc:  # a library bug on odd input is a failed attempt, not a crash
            errors.append((note, ConversionError(note or "convert", f"{type(exc).__name__}: {exc}")))
    (_, first), later = errors[0], errors[1:]
    others = "; ".join(f"{note or exc.stage}: {exc.reason}" for note, exc in later)
    raise ConversionError(first.stage, first.reason + (f" (fallbacks failed: {others})" if others else ""))


# ---------------------------------------------------------------- MusicXML


def _container_root(zf: zipfile.ZipFile) -> str | None:
    try:
        root = ElementTree.fromstring(zf.read("META-INF/container.xml"))
    except (KeyError, ElementTree.ParseError):
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "rootfile" and el.get("full-path"):
            return el.get("full-path")
    return None


def read_musicxml(data: bytes, max_bytes: int | None = DEFAULT_MAX_BYTES) -> tuple[bytes, list[str]]:
    """The MusicXML document in ``data`` (plain XML or a compressed .mxl archive). For archives the
    reference's choice comes first (the first ``*.xml`` outside ``META-INF``), else the container's root
    file (e.g. ``score.musicxml``), else the only XML-like member."""
    if not data.startswith(b"PK"):
        utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        head = data[:4096].decode("utf-16", "replace") if utf16 else data[:4096].decode("latin-1")
        if not head.lstrip("\ufeff\xef\xbb\xbf \t\r\n").startswith("<"):
            raise ConversionError("read", "neither XML nor an .mxl (zip) archive")
        return data, []
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ConversionError("read", f"bad .mxl archive: {exc}") from exc
    notes: list[str] = []
    member = next((n for n in names if n[:4] != "META" and n[-4:].lower() == ".xml"), None)
    if member is None:
        member = _container_root(zf)
        if member is None:
            xmlish = [n for n in names if n[:4] != "META" and n.lower().endswith((".musicxml", ".xml"))]
            member = xmlish[0] if len(xmlish) == 1 else None
        if member is None:
            raise ConversionError("read", "zip archive without a MusicXML score (not an .mxl)")
        notes.append("mxl root file")
    try:
        info = zf.getinfo(member)
        if max_bytes is not None and info.file_size > max_bytes:
            raise ConversionError("read", f"{member} unpacks to {info.file_size:,} bytes, over the limit")
        return zf.read(member), notes
    except (KeyError, zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
        raise ConversionError("read", f"cannot read {member} from the archive: {exc}") from exc


_SIBELIUS_VERSE = re.compile(r"^.*verse")  # xml2abc strips this before int()


def sanitize_musicxml(xml: bytes) -> bytes | None:
    """Repair what makes xml2abc crash on otherwise valid MusicXML: non-numeric lyric numbers
    (``number="chorus"``) and voices, metronome marks without a tempo. None when nothing needed it."""
    try:
        tree = ElementTree.ElementTree(ElementTree.fromstring(xml))
    except ElementTree.ParseError:
        return None
    changed = False
    lyrics = list(tree.iter("lyric"))
    numbers = [_SIBELIUS_VERSE.sub("", el.get("number", "1")).strip() for el in lyrics]
    lyric_ids: dict[str, str] = {}
    base = max([int(n) for n in numbers if n.isdigit()] + [0])
    for el, number in zip(lyrics, numbers, strict=True):
        if not number.isdigit():  # e.g. number="chorus": the next free verse number
            el.set("number", lyric_ids.setdefault(number, str(base + len(lyric_ids) + 1)))
            changed = True
    voices = [el for el in tree.iter("voice") if el.text is not None]
    voice_ids: dict[str, str] = {}
    base = max([int(el.text) for el in voices if el.text.strip().isdigit()] + [0])
    for el in voices:
        if not el.text.strip().isdigit():
            el.text = voice_ids.setdefault(el.text.strip(), str(base + len(voice_ids) + 1))
            changed = True
    for dirtype in tree.iter("direction-type"):
        for metronome in dirtype.findall("metronome"):
            if metronome.find("per-minute") is None:  # a metric modulation (beat-unit = beat-unit)
                dirtype.remove(metronome)
                changed = True
    changed = plain_accidentals(tree) or changed
    if not changed:
        return None
    return ElementTree.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True)


# accidentals xml2abc and music21 both know; any other (natural-sharp, quarter tones, "other") is written
# as the one its note's <alter> sounds
PLAIN_ACCIDENTALS = {"natural", "sharp", "flat", "double-sharp", "sharp-sharp", "flat-flat", "double-flat"}
ALTER_ACCIDENTAL = {-2: "flat-flat", -1: "flat", 0: "natural", 1: "sharp", 2: "double-sharp"}


def plain_accidentals(tree: ElementTree.ElementTree) -> bool:
    """Rewrite the unusual accidentals of a MusicXML tree in place; whether any was."""
    changed = False
    for note in tree.iter("note"):
        accidental = note.find("accidental")
        if accidental is None or (accidental.text or "").strip() in PLAIN_ACCIDENTALS:
            continue
        try:
            alter = round(float(note.findtext("pitch/alter") or 0))
        except ValueError:
            alter = 0
        if alter in ALTER_ACCIDENTAL:
            accidental.text = ALTER_ACCIDENTAL[alter]
        else:
            note.remove(accidental)
        changed = True
    return changed


def repair_for_music21(xml: bytes) -> bytes | None:
    """MusicXML without its harmony annotations (chord symbols, functions music21 cannot realize) and
    with plain accidentals; None when it had neither."""
    try:
        tree = ElementTree.ElementTree(ElementTree.fromstring(xml))
    except ElementTree.ParseError:
        return None
    changed = plain_accidentals(tree)
    for parent in list(tree.iter()):
        for harmony in parent.findall("harmony"):
            parent.remove(harmony)
            changed = True
    if not changed:
        return None
    return ElementTree.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True)


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


_INLINE_VOICE = re.compile(r"\[V:\s*([^\]\s]+)")


def abc_tune_to_midi(tune: str) -> tuple[bytes, tuple[str, ...]]:
    """MIDI for one ABC tune, and notes: music21's ABC reader, else abc2xml and music21's MusicXML
    reader. Voices interleaved bar by bar (``[V:1]...|[V:2]...|``, as model input and xml2abc write
    them) go through abc2xml first: music21's ABC reader makes no measures of them, and rendering fails
    (every piece of the bench corpus, 40% of its rendering time spent failing)."""
    via_music21 = lambda: m21.stream_to_midis(m21.parse_text(tune, "abc"))[0]  # noqa: E731
    via_abc2xml = lambda: m21.stream_to_midis(m21.parse_xml(abctools.abc2xml(tune)[0].encode()))[0]  # noqa: E731
    attempts = [("", via_music21), ("abc2xml", via_abc2xml)]
    if len(set(_INLINE_VOICE.findall(tune))) > 1:
        attempts = [("", via_abc2xml), ("music21 ABC", via_music21)]
    rendered, fallback = _first_success(attempts)
    _sfx, midi, notes = rendered  # type: ignore[misc]
    return midi, tuple(fallback) + notes


def musicxml_to_midis(xml: bytes) -> list[Piece]:
    """music21's MIDI rendering (as Latin-1 text) of every score in MusicXML; a document music21 cannot
    read for its harmony annotations or accidentals is read without the annotations and with plain
    accidentals (MIDI sounds neither the one nor the difference)."""

    def repaired() -> list[tuple[str, bytes, tuple[str, ...]]]:
        fixed = repair_for_music21(xml)
        if fixed is None:
            raise ConversionError("skip", "nothing to repair")
        return m21.stream_to_midis(m21.parse_xml(fixed))

    rendered, fallback = _first_success(
        [("", lambda: m21.stream_to_midis(m21.parse_xml(xml))), ("without harmony annotations", repaired)]
    )
    return [Piece(s, m.decode("latin-1"), tuple(fallback) + n) for s, m, n in rendered]  # type: ignore[union-attr]


def file_to_pieces(
    path: str | os.PathLike,
    to: str,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    failed: list[tuple[str, ConversionError]] | None = None,
) -> list[Piece]:
    """Every piece of a score file as interleaved ABC (``to="abc"``) or MIDI bytes as Latin-1 text
    (``to="midi"``; use :func:`score_midis`). Raises :class:`ConversionError` on the first failure; with a
    ``failed`` list, a tune of a book that fails is added there as ``(suffix, error)`` and the other tunes
    go on (the error is raised only when no tune converts)."""
    kind = source_kind(path)
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
                    midi, rendered = abc_tune_to_midi(tune)
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
        return musicxml_to_midis(xml)
    if kind == "music21":
        if to == "abc":
            return music21_file_to_abc(path)
        return [Piece(s, m.decode("latin-1"), n) for s, m, n in m21.stream_to_midis(m21.parse_path(path))]
    raise ConversionError("read", f"not a score file: {Path(path).suffix or 'no suffix'}")
