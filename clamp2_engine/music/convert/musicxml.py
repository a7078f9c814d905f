"""MusicXML documents: read from plain XML or a compressed .mxl archive, and repaired for music21 where
it cannot read them (harmony annotations, accidentals it does not know)."""

from __future__ import annotations

import io
import re
import zipfile
from xml.etree import ElementTree

from .common import DEFAULT_MAX_BYTES, ConversionError


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
