"""What a file says about its piece, in the one schema of :mod:`clamp2_engine.store.fields`.

- :func:`file_metadata`: each format's own fields. MusicXML: movement and work titles, movement number,
  creators (composer, lyricist, arranger), rights, and ``credit-words`` where those are missing;
  Humdrum reference records (``!!!COM``, ``!!!OTL``, ``!!!OPR``, ``!!!SCT`` ...); ABC ``T:`` ``C:``
  ``R:`` ``O:`` ``B:``; MIDI track names, instrument names, copyright and text events, its length.
- :func:`music_metadata`: what the music states, read from the model input every format becomes:
  meter, key, number of voices, instruments (staff names) and bars of interleaved ABC.

Cheap and forgiving: a field that cannot be read is absent, never an error (the conversion reports what
is wrong with a file).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from clamp2_engine.music.abc import abc_meter, count_voices, header_field
from clamp2_engine.types import ABC_SUFFIXES, MIDI_SUFFIXES

MAX_FIELD = 300  # characters kept of one value
HUMDRUM = {
    "COM": "composer",
    "OTL": "title",
    "OPR": "work_title",
    "OMV": "movement",
    "OMD": "tempo",
    "SCT": "catalog",
    "SCA": "catalog",
    "OPS": "opus",
    "LYR": "lyricist",
    "TXO": "lyricist",
    "ODT": "date",
    "CDT": "composer_dates",
    "AGN": "genres",
    "GTL": "collection",
    "YEC": "rights",
}
ABC_FIELDS = {"T": "title", "C": "composer", "R": "genres", "O": "origin", "B": "book"}
CREATORS = {"composer": "composer", "lyricist": "lyricist", "poet": "lyricist", "arranger": "arranger"}
GENERIC_NAME = re.compile(r"^(?:voice|part|staff|track|musicxml part|instrument|p)?\s*\d*$", re.I)


def clean(text: Any) -> str | None:
    """One line, no escapes or padding, at most ``MAX_FIELD`` characters; ``None`` when empty."""
    if not isinstance(text, str):
        return None
    text = re.sub(r"(\\[nt])+", " ", text)  # xml2abc writes line breaks in names as \n
    text = " ".join(text.split()).strip(" :;,")
    return text[:MAX_FIELD] or None


def instrument_names(names: list[Any]) -> list[str]:
    """Distinct cleaned names, generic ones ("Part 1", "Staff", "P2") left out."""
    out: list[str] = []
    for name in names:
        text = clean(name)
        if text and not GENERIC_NAME.match(text) and text not in out:
            out.append(text)
    return out


def file_metadata(path: Path, part: str = "") -> dict[str, Any]:
    """The fields ``path`` states about its piece (tune ``part`` of an ABC book)."""
    suffix = path.suffix.lower()
    try:
        if suffix in ABC_SUFFIXES:
            return abc_metadata(_abc_tune(path, part))
        if suffix in (".xml", ".musicxml", ".mxl"):
            from clamp2_engine.music.convert.score import read_musicxml

            return musicxml_metadata(read_musicxml(path.read_bytes())[0])
        if suffix == ".krn":
            return humdrum_metadata(path.read_bytes()[: 1 << 20].decode("utf-8", errors="replace"))
        if suffix in MIDI_SUFFIXES:
            return midi_metadata(path)
    except Exception:  # metadata is a nicety: a file that cannot be read fails in conversion, with its reason
        return {}
    return {}


def _abc_tune(path: Path, part: str) -> str:
    tunes = _abc_tunes(path, path.stat().st_mtime_ns)
    return tunes.get(part) or next(iter(tunes.values()), "")


@functools.lru_cache(maxsize=4)
def _abc_tunes(path: Path, _mtime: int) -> dict[str, str]:
    """A book's tunes by part, read once for all its pieces."""
    from clamp2_engine.music.convert.abctools import split_tunes

    text = path.read_bytes()[: 1 << 20].decode("utf-8", errors="replace")
    return {sfx.lstrip("_"): tune for sfx, tune in split_tunes(text)}


def abc_metadata(tune: str) -> dict[str, Any]:
    """The header's fields; the first ``T:`` is the title, every later one an other title (``titles``)."""
    out: dict[str, Any] = {}
    for line in tune.splitlines():
        m = re.match(r"([A-Z]):\s*(.*)$", line)
        if m and m.group(1) in ABC_FIELDS and (value := clean(m.group(2))):
            name = ABC_FIELDS[m.group(1)]
            if name == "genres":
                out.setdefault(name, []).append(value.lower())
            elif name == "title" and "title" in out:
                add_title(out, value)
            else:
                out.setdefault(name, value)
        if line.startswith("K:"):
            break  # the header ends
    return out


def add_title(out: dict[str, Any], title: str | None) -> None:
    """``title`` among the other titles of ``out`` (``titles``), unless it is the title already."""
    if title and title != out.get("title") and title not in out.setdefault("titles", []):
        out["titles"].append(title)
    if not out.get("titles"):
        out.pop("titles", None)


def musicxml_metadata(xml: bytes) -> dict[str, Any]:
    root = ElementTree.fromstring(xml)
    movement, work = clean(root.findtext("movement-title")), clean(root.findtext("work/work-title"))
    out: dict[str, Any] = {
        "title": movement or work,
        "work_title": work if movement and work and work != movement else None,
        "movement": clean(root.findtext("movement-number")),
        "opus": clean(root.findtext("work/work-number")),
        "rights": clean(root.findtext("identification/rights")),
    }
    for creator in root.iterfind("identification/creator"):
        name = CREATORS.get((creator.get("type") or "").lower())
        if name and not out.get(name):
            out[name] = clean(creator.text)
    credits = [
        (c.findtext("credit-type"), clean(" ".join(w.text or "" for w in c.iterfind("credit-words"))))
        for c in root.iterfind("credit")
    ]
    for kind, name in (("title", "title"), ("composer", "composer"), ("lyricist", "lyricist")):
        if not out.get(name):
            out[name] = next((text for k, text in credits if k == kind and text), None)
    if not out.get("title"):  # untyped credits: the first words on the page
        out["title"] = next((text for k, text in credits if k is None and text), None)
    for kind, text in credits:  # a title the page shows beside the movement's: another name of the piece
        if kind in ("title", "subtitle"):
            add_title(out, text)
    parts = [p.findtext("part-name") for p in root.iterfind("part-list/score-part")]
    out["instruments"] = instrument_names(parts)
    return {k: v for k, v in out.items() if v}


def humdrum_metadata(text: str) -> dict[str, Any]:
    """Reference records ``!!!KEY: value`` (the untranslated one when a language is tagged)."""
    out: dict[str, Any] = {}
    for m in re.finditer(r"^!!!([A-Z]{3})(@@?[A-Z]+)?[^:\n]*:\s*(.*)$", text, re.M):
        key, language, value = m.group(1), m.group(2), clean(m.group(3))
        name = HUMDRUM.get(key)
        if not name or not value or (language and name in out and name != "title"):
            continue
        if name == "genres":
            out.setdefault(name, []).append(value.lower())
        elif name == "title":  # the untranslated one is the title, every language's an other title
            if not language and out.get("title"):
                add_title(out, out.pop("title"))
            if "title" not in out:
                out["title"] = value
            add_title(out, value)
        elif name not in out:
            out[name] = value
    names = re.findall(r'^\*I"(.+)$', text, re.M)
    names = [n for line in names for n in line.split("\t")]
    if names:
        out["instruments"] = instrument_names([n.removeprefix('*I"') for n in names])
    return out


def midi_metadata(path: Path) -> dict[str, Any]:
    """What a MIDI file says of itself: a title (the first track's name, or a text or marker before the
    first note, when it names no instrument), instruments (track and instrument names that name one, or
    the General MIDI programs), meter and key (the first ``time_signature`` / ``key_signature``),
    copyright, text events, length in seconds."""
    import mido

    mid = mido.MidiFile(path)
    out: dict[str, Any] = {}
    names, texts, programs, titles = [], [], [], []
    for i, track in enumerate(mid.tracks):
        noted = False  # a note of this track came already
        for msg in track:
            noted = noted or msg.type == "note_on"
            if msg.type in ("track_name", "instrument_name") and (name := clean(msg.name)):
                if names_instrument(name):
                    names.append(name)
                elif msg.type == "track_name" and i == 0:
                    titles.append(name)
            elif msg.type in ("text", "marker") and (value := clean(msg.text)):
                if not noted and i == 0 and msg.type == "marker":
                    titles.append(value)
                texts.append(value)
            elif msg.type == "copyright" and (value := clean(msg.text)):
                out.setdefault("rights", value)
            elif msg.type == "program_change" and msg.channel != 9:
                programs.append(msg.program)
            elif msg.type == "time_signature" and "meter" not in out:
                out["meter"] = f"{msg.numerator}/{msg.denominator}"
            elif msg.type == "key_signature" and "key" not in out:
                out["key"] = key_name(msg.key)
    pre_note_texts = [t for t in _texts_before_notes(mid) if not names_instrument(t)]
    if titles or pre_note_texts:
        out["title"] = (titles or pre_note_texts)[0]
    out["instruments"] = instrument_names(names) or general_midi(programs)
    out["comments"] = clean(" / ".join(dict.fromkeys(texts)))
    try:
        out["seconds"] = round(mid.length, 1)
    except Exception:  # a file whose length mido cannot work out
        pass
    return {k: v for k, v in out.items() if v}


def _texts_before_notes(mid: Any) -> list[str]:
    """Text events of the first track before its first note."""
    out = []
    for msg in mid.tracks[0] if mid.tracks else []:
        if msg.type == "note_on":
            break
        if msg.type == "text" and (value := clean(msg.text)):
            out.append(value)
    return out


INSTRUMENT_WORDS = re.compile(
    r"\b(piano|pno|keys?|organ|harpsichord|cembalo|clavi\w*|celesta|guitar|gtr|bass|violin|vln|viol[ae]?|"
    r"viola|cello|violoncello|contrabass|fiddle|harp|flute|fl|piccolo|oboe|clarinet|cl|bassoon|fagott\w*|"
    r"sax\w*|trumpet|tpt|trombone|tbn|horn|tuba|drums?|kit|percussion|perc|timpani|strings?|choir|chorus|"
    r"voice|vocals?|vox|soprano|alto|tenor|baritone|accordion|harmonica|banjo|mandolin|ukulele|synth\w*|"
    r"glockenspiel|xylophone|marimba|vibraphone|bells?|recorder|whistle|bagpipes?|sitar|koto|shamisen|"
    r"orchestra|ensemble|brass|woodwinds?|melody|lead|pad|klavier|geige|flöte|chitarra|pianoforte|lute|"
    r"oud|lyre|theorbo|zither|dulcimer|cornet|euphonium|bugle|fife|ocarina|pipa|erhu|guzheng|shakuhachi|"
    r"tabla|cajon|congas?|bongos?|cymbals?|snare|hi-?hat|tambourine|triangle|continuo|bc)\b",
    re.I,
)


def names_instrument(name: str) -> bool:
    """Whether a track's name names an instrument ("Piano right hand", "Vln. 1"), not the piece."""
    return bool(INSTRUMENT_WORDS.search(name)) or bool(GENERIC_NAME.match(name))


def general_midi(programs: list[int]) -> list[str]:
    """General MIDI instrument names of ``programs`` (music21's table), distinct, in order."""
    try:
        from music21 import instrument
    except ImportError:
        return []
    out: list[str] = []
    for program in dict.fromkeys(programs):
        try:
            name = instrument.instrumentFromMidiProgram(program).instrumentName
        except Exception:  # a program music21 has no instrument for
            continue
        if name and name not in out:
            out.append(name)
    return out


def music_metadata(abc: str | None) -> dict[str, Any]:
    """Meter, key, voices, instruments and bars stated by interleaved ABC (every score becomes it)."""
    if not abc:
        return {}

    body = [line for line in abc.splitlines() if line.startswith("[V:")]
    out: dict[str, Any] = {
        "meter": abc_meter(abc),
        "key": key_name(header_field(abc, "K")),
        "voices": count_voices(abc),
        "instruments": instrument_names(re.findall(r'^V:.*?\bnm="([^"]*)"', abc, re.M)),
        "bars": len(body) or None,
    }
    return {k: v for k, v in out.items() if v}


MODES = {"": "major", "maj": "major", "ion": "major", "m": "minor", "min": "minor", "aeo": "minor"}
MODES |= {"dor": "dorian", "phr": "phrygian", "lyd": "lydian", "mix": "mixolydian", "loc": "locrian"}


def key_name(field: str | None) -> str | None:
    """``"G"`` -> "G major", ``"Ebm"`` -> "E♭ minor", ``"ADor"`` -> "A dorian"; ``None`` for none/HP."""
    m = re.match(r"\s*([A-G])([#b]?)\s*([A-Za-z]*)", field or "")
    if not m:
        return None
    mode = MODES.get(m.group(3).lower()[:3])
    if mode is None:
        return None
    accidental = {"#": "♯", "b": "♭"}.get(m.group(2), "")
    return f"{m.group(1)}{accidental} {mode}"
