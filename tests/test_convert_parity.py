"""Conversion reproduces the reference pipeline's outputs in the parity fixture, one case per file."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import mido
import pytest
from fixture_paths import PARITY, names

from clamp2_engine.music.convert import convert_file, midi_to_bytes, midi_to_mtf, mtf_to_midi, score_to_midi

_INPUTS = PARITY / "inputs"


def _names(folder: str, pattern: str) -> list[str]:
    return names(_INPUTS / folder, pattern)


def _abc_cases() -> list:
    """One case per interleaved ABC file; large scores (music21 parses them for seconds) are slow."""
    return [
        pytest.param(n, marks=pytest.mark.slow) if (_INPUTS / "abc" / n).stat().st_size > 15_000 else n
        for n in _names("abc", "*.abc")
    ]


def _source_xml(inputs: Path, stem: str) -> Path:
    [path] = [p for p in (inputs / "xml").iterdir() if p.stem == stem]
    return path


@pytest.fixture(scope="module")
def inputs(parity_dir: Path) -> Path:
    return parity_dir / "inputs"


@pytest.mark.parametrize("name", _names("abc", "*.abc"))
def test_xml_to_abc_matches_reference_bytes(inputs: Path, name: str) -> None:
    [(out_name, text)] = convert_file(_source_xml(inputs, Path(name).stem), "abc")
    assert out_name == name
    assert text.encode("utf-8") == (inputs / "abc" / name).read_bytes()


@pytest.mark.parametrize("name", _names("mtf", "*.mtf"))
def test_midi_to_mtf_matches_reference(inputs: Path, name: str) -> None:
    mtf = midi_to_mtf(inputs / "midi" / (Path(name).stem + ".mid"))
    assert mtf.encode("utf-8") == (inputs / "mtf" / name).read_bytes()


@pytest.mark.parametrize("name", _names("midi_roundtrip", "*.mid"))
def test_mtf_to_midi_matches_reference_messages(inputs: Path, name: str) -> None:
    mid = mtf_to_midi((inputs / "mtf" / (Path(name).stem + ".mtf")).read_text(encoding="utf-8"))
    saved = mido.MidiFile(file=io.BytesIO(midi_to_bytes(mid)))
    ref = mido.MidiFile(inputs / "midi_roundtrip" / name)
    assert saved.ticks_per_beat == ref.ticks_per_beat
    assert [list(t) for t in saved.tracks] == [list(t) for t in ref.tracks]


def _parts_and_measures(score) -> list[int]:
    return [len(part.getElementsByClass("Measure")) for part in score.parts]


@pytest.mark.parametrize("name", _abc_cases())
def test_abc_to_xml_keeps_parts_and_measures(inputs: Path, name: str, tmp_path: Path) -> None:
    from music21 import converter

    [(out_name, xml)] = convert_file(inputs / "abc" / name, "xml", out_dir=tmp_path)
    assert out_name == Path(name).stem + ".xml"
    assert (tmp_path / out_name).is_file()
    ours = converter.parse(tmp_path / out_name, forceSource=True)
    ref = converter.parse(_source_xml(inputs, Path(name).stem), forceSource=True)
    assert _parts_and_measures(ours) == _parts_and_measures(ref)


def _reference_failures(parity_dir: Path) -> list[str]:
    manifest = json.loads((parity_dir / "manifest.json").read_text(encoding="utf-8"))
    return [
        entry.split(":", 1)[0] for entry in manifest["xml2abc_failures"] + manifest["interleave_failures"]
    ]


@pytest.mark.parametrize("name", _reference_failures(PARITY))
def test_reference_failures_are_converted(inputs: Path, name: str) -> None:
    """The pieces the reference dropped become interleaved ABC: one line per bar holding every voice,
    as many bars as music21 reads in the source, and abc2xml reads it back."""
    from music21 import converter

    from clamp2_engine.music.convert.abctools import abc2xml

    [source] = [p for p in (inputs / "xml" / name, inputs / "abc_standard" / name) if p.is_file()]
    [(out_name, text)] = convert_file(source, "abc")
    assert out_name == Path(name).stem + ".abc"
    lines = text.splitlines()
    voices = [line.split()[0] for line in lines if line.startswith("V:")]
    bars = [line for line in lines if line.startswith("[V:")]
    assert voices
    assert bars
    for bar in bars:
        assert [f"V:{v}" for v in re.findall(r"\[V:(\d+)\]", bar)] == voices
    measures = len(converter.parse(source, forceSource=True).parts[0].getElementsByClass("Measure"))
    assert len(bars) == max(1, measures)
    assert not any(line.startswith(("X:", "T:", "w:")) for line in lines)
    assert abc2xml(text)


def test_score_render_matches_reference_mtf(inputs: Path) -> None:
    """One score yields both modalities: its music21 MIDI rendering gives the reference's MTF byte for byte
    (``renderer="music21"``; Verovio's, the default, has its notes and structure: tests/test_engraver.py)."""
    rendered = inputs / "mtf" / "render_bach_bwv66_6.mtf"
    mtf = midi_to_mtf(score_to_midi(inputs / "xml" / "bach_bwv66_6.mxl", renderer="music21"))
    assert mtf == rendered.read_text(encoding="utf-8")
