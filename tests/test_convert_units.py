"""The conversion library's pieces: tune splitting, decoding, limits, MTF round trips, repairs."""

from __future__ import annotations

import io
from pathlib import Path

import mido
import pytest

from clamp2_engine.music.convert import (
    MIDI_SUFFIXES,
    SCORE_SUFFIXES,
    ConversionError,
    convert_file,
    midi_to_bytes,
    midi_to_mtf,
    mtf_to_midi,
    score_to_interleaved_abc,
    score_to_midi,
    score_to_midis,
)
from clamp2_engine.music.convert.abctools import split_tunes
from clamp2_engine.music.convert.common import decode_text, read_input
from clamp2_engine.music.convert.score import sanitize_musicxml

BOOK = "%%abc-include /etc/hostname\nX:3\nT:A\nK:C\nCDEF|]\n\nX: 4\nT:B\nK:G\nGABc|]\n"


def test_suffix_constants() -> None:
    assert {".xml", ".mxl", ".musicxml", ".abc", ".krn"} <= SCORE_SUFFIXES
    assert MIDI_SUFFIXES == {".mid", ".midi"}


@pytest.mark.parametrize(
    ("text", "suffixes"),
    [
        ("X:1\nK:C\nC|]\n", [""]),
        ("K:C\nC|]\n", [""]),
        ("X:1\nK:C\nC|]\nX:2\nK:C\nD|]\n", ["_1", "_2"]),
        ("X:1\nK:C\nC|]\nX:1\nK:C\nD|]\nX:1\nK:C\nE|]\n", ["_1", "_2", "_3"]),  # repeated X: -> positions
        ("X:1 a\nK:C\nC|]\nX:2\nK:C\nD|]\n", ["_1", "_2"]),
        ("", []),
    ],
)
def test_split_tunes_names(text: str, suffixes: list[str]) -> None:
    assert [sfx for sfx, _ in split_tunes(text)] == suffixes


def test_split_tunes_keeps_header_and_drops_includes() -> None:
    tunes = split_tunes("%%pagewidth 21cm\n" + BOOK)
    assert [s for s, _ in tunes] == ["_3", "_4"]
    assert all(t.startswith("%%pagewidth 21cm\n") for _, t in tunes)
    assert all("abc-include" not in t for _, t in tunes)


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("Café".encode(), "utf-8"),
        ("\ufeffCafé".encode(), "utf-8"),
        ("Café – naïve".encode("cp1252"), "cp1252"),
        ("Caf\u00e9 \x81".encode("latin-1"), "latin-1"),
        ("Café".encode("utf-16"), "utf-16"),
    ],
)
def test_decode_text(data: bytes, encoding: str) -> None:
    text, used = decode_text(data)
    assert used == encoding
    assert text.lstrip("\ufeff").startswith("Caf")


def test_decode_refuses_binary() -> None:
    with pytest.raises(ConversionError) as err:
        decode_text(b"\x00\x01\x02binary\x00")
    assert err.value.stage == "decode"


def test_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.abc"
    big.write_text("X:1\nK:C\n" + "C" * 5000)
    with pytest.raises(ConversionError, match="limit"):
        read_input(big, max_bytes=1000)
    with pytest.raises(ConversionError, match="limit"):
        score_to_interleaved_abc(big, max_bytes=1000)


def test_tune_book_to_interleaved_abc(tmp_path: Path) -> None:
    book = tmp_path / "book.abc"
    book.write_text(BOOK)
    pieces = score_to_interleaved_abc(book)
    assert [s for s, _ in pieces] == ["_3", "_4"]
    for _, text in pieces:
        assert text.startswith("L:1/8\n")
        assert "[V:1]" in text
        assert "T:" not in text
    names = [name for name, _ in convert_file(book, "abc", out_dir=tmp_path / "out")]
    assert names == ["book_3.abc", "book_4.abc"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names


def test_score_to_midi_for_books(tmp_path: Path) -> None:
    book = tmp_path / "book.abc"
    book.write_text(BOOK)
    midis = score_to_midis(book)
    assert [s for s, _ in midis] == ["_3", "_4"]
    assert all(any(m.type == "note_on" for m in mid.merged_track) for _, mid in midis)
    with pytest.raises(ConversionError, match="score_to_midis"):
        score_to_midi(book)


def test_mtf_full_round_trip_of_text_and_sysex() -> None:
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="My  Track name"),
            mido.MetaMessage("text", text="line one\nline \\two é"),
            mido.MetaMessage("key_signature", key="F#m"),
            mido.MetaMessage("lyrics", text=""),
            mido.Message("sysex", data=(1, 2, 3)),
            mido.MetaMessage("sequencer_specific", data=[5, 6]),
            mido.Message("note_on", note=60, velocity=90, time=10),
            mido.Message("pitchwheel", pitch=-200, time=5),
            mido.Message("note_off", note=60, time=470),
        ]
    )
    mid.tracks.append(track)
    full = midi_to_mtf(mid, m3_compatible=False)
    assert len(full.splitlines()) == len(track) + 2  # ticks line + end_of_track from merging
    back = mtf_to_midi(full)
    assert list(back.tracks[0]) == list(mid.merged_track)
    m3 = midi_to_mtf(mido.MidiFile(file=io.BytesIO(midi_to_bytes(mid))))
    assert "track_name" not in m3
    assert "sysex" not in m3
    assert "key_signature F#m 0" in m3


@pytest.mark.parametrize(
    ("mtf", "match"),
    [
        ("", "ticks_per_beat"),
        ("note_on 0 0 60 90", "ticks_per_beat"),
        ("ticks_per_beat x", "ticks_per_beat"),
        ("ticks_per_beat 480\nnote_on 0 0 60", "line 2"),
        ("ticks_per_beat 480\nnote_on 0 0 60 90\nwhat_is_this 1 2", "line 3"),
        ("ticks_per_beat 480\nnote_on 0 0 600 90", "line 2"),
    ],
)
def test_bad_mtf_names_the_line(mtf: str, match: str) -> None:
    with pytest.raises(ConversionError, match=match):
        mtf_to_midi(mtf)


def test_mtf_skips_unknown_meta() -> None:
    mid = mtf_to_midi("ticks_per_beat 96\nunknown_meta 0 (1, 2) 0\nnote_on 0 0 60 90")
    assert [m.type for m in mid.tracks[0]] == ["note_on"]


def test_sanitize_repairs_lyric_numbers_and_tempo() -> None:
    xml = (
        b"<score-partwise><part id='P1'><measure><note><lyric number='chorus'><text>la</text></lyric>"
        b"</note><direction><direction-type><metronome><beat-unit>quarter</beat-unit>"
        b"<beat-unit>half</beat-unit></metronome></direction-type></direction></measure></part>"
        b"</score-partwise>"
    )
    fixed = sanitize_musicxml(xml)
    assert fixed is not None
    assert b"chorus" not in fixed
    assert b"metronome" not in fixed
    assert sanitize_musicxml(b"<score-partwise/>") is None


def test_convert_file_refuses_other_formats(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConversionError, match="cannot convert"):
        convert_file(tmp_path / "notes.txt", "abc")
    with pytest.raises(ValueError):
        convert_file(tmp_path / "notes.txt", "pdf")


def test_humdrum_converts_through_music21(tmp_path: Path) -> None:
    krn = tmp_path / "tiny.krn"
    krn.write_text("**kern\t**kern\n*M2/4\t*M2/4\n=1\t=1\n4c\t4C\n4e\t4G\n=2\t=2\n2g\t2C\n==\t==\n*-\t*-\n")
    [(suffix, text)] = score_to_interleaved_abc(krn)
    assert suffix == ""
    assert "[V:1]" in text
    assert "[V:2]" in text
    assert len([line for line in text.splitlines() if line.startswith("[V:1]")]) == 2


VOICE_SECTIONS = """X:1
T:Fife and drum
M:2/4
L:1/8
K:D
V:1
dA dA | df f2 | Bg Af | Ge Ec |
V:2
FA FA | Ad d2 | GB FA | EC CA, |
V:1
dA dA | df f2 | Ac eg | fd d2 |]
V:2
FA FA | Ad d2 | ce ce | dA A2 |]
"""


def test_voice_sections_are_interleaved_properly(tmp_path: Path) -> None:
    """The reference takes everything before the last ``V:1`` line for header lines; the result must
    instead hold one bar of every voice per line."""
    from clamp2_engine.music.convert.score import is_interleaved

    path = tmp_path / "fife.abc"
    path.write_text(VOICE_SECTIONS)
    [(_, text)] = score_to_interleaved_abc(path)
    assert is_interleaved(text)
    bars = [line for line in text.splitlines() if line.startswith("[V:")]
    assert len(bars) == 8
    assert all(line.count("[V:") == 2 for line in bars)


def test_interleaved_abc_passes_through_unchanged(parity_dir: Path, tmp_path: Path) -> None:
    from clamp2_engine.music.convert.score import is_interleaved

    for path in sorted((parity_dir / "inputs" / "abc").glob("*.abc")):
        text = path.read_text(encoding="utf-8")
        assert is_interleaved(text)
        [(_, out)] = score_to_interleaved_abc(path)
        assert out == text
    standard = parity_dir / "inputs" / "abc_standard" / "bach_bwv66_6.abc"
    assert not is_interleaved(standard.read_text(encoding="utf-8"))
