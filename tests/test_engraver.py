"""Scores (MusicXML, MEI, interleaved ABC) rendered to MIDI by Verovio, normalised to the conventions of
music21's rendering: the same notes and message structure as music21 on fixture scores, music21 where
Verovio fails (said as a note)."""

from __future__ import annotations

import io
from pathlib import Path

import mido
import pytest

from clamp2_engine.music.convert import ConversionError, convert_tree, engraver, score, score_to_midi
from clamp2_engine.music.convert.mtf import mido_to_mtf
from clamp2_engine.music.patches import split_patches

SAME_NOTES = (  # scores both renderers read alike (others differ in tuplets, grace notes, chord symbols)
    "clamp2-parity/inputs/xml/bach_bwv66_6.mxl",
    "clamp2-parity/inputs/xml/corelli_opus3no1_1grave.xml",
    "clamp2-parity/inputs/xml/liliuokalani_aloha_oe.mxl",
    "real-scores/lied_harmony.musicxml",
    "real-scores/natural_sharp.musicxml",
)
FIXTURES = Path(__file__).parent / "fixtures"


def patch_count(mid: mido.MidiFile) -> int:
    return len(split_patches(mido_to_mtf(mid)))


@pytest.mark.parametrize("name", SAME_NOTES)
def test_verovio_renders_music21s_notes_in_music21s_conventions(name):
    by_music21 = score_to_midi(FIXTURES / name, renderer="music21")
    by_verovio = score_to_midi(FIXTURES / name)
    assert by_verovio.ticks_per_beat == by_music21.ticks_per_beat == engraver.TICKS_PER_BEAT
    assert engraver.note_events(by_verovio) == engraver.note_events(by_music21)
    assert abs(patch_count(by_verovio) / patch_count(by_music21) - 1) <= 0.05
    conductor, *parts = by_verovio.tracks
    assert len(parts) == len(by_music21.tracks) - 1
    assert {m.type for m in conductor} <= {*engraver.CONDUCTOR, "end_of_track"}
    for track in parts:
        kinds = [m.type for m in track if not m.is_meta]
        assert kinds[:2] == ["pitchwheel", "program_change"]  # music21's preamble
        assert not any(m.type == "note_on" and m.velocity == 0 for m in track)  # ends are note_off
        assert not any(m.type in engraver.CONDUCTOR for m in track)


def test_every_fixture_score_keeps_its_patch_count_within_5_percent():
    for path in sorted((FIXTURES / "clamp2-parity" / "inputs" / "xml").iterdir()):
        by_music21, by_verovio = score_to_midi(path, renderer="music21"), score_to_midi(path)
        assert abs(patch_count(by_verovio) / patch_count(by_music21) - 1) <= 0.05, path.name


def test_normalize_puts_verovios_midi_in_music21s_conventions():
    """A file as Verovio writes it: 120 ticks a beat, ends as note_on 0 one tick early, signatures in the
    part track, no program."""
    verovio = mido.MidiFile(type=1, ticks_per_beat=120)
    verovio.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000)]))
    verovio.tracks.append(
        mido.MidiTrack(
            [
                mido.MetaMessage("track_name", name="Soprano"),
                mido.MetaMessage("key_signature", key="G"),
                mido.MetaMessage("time_signature", numerator=3, denominator=4),
                mido.Message("note_on", channel=2, note=67, velocity=90),
                mido.Message("note_on", channel=2, note=67, velocity=0, time=119),
                mido.Message("note_on", channel=2, note=69, velocity=90, time=1),
                mido.Message("note_on", channel=2, note=69, velocity=0, time=59),
            ]
        )
    )
    out = engraver.normalize(verovio)
    assert out.ticks_per_beat == 10080
    assert [(m.type, m.time) for m in out.tracks[0]] == [
        ("set_tempo", 0),
        ("key_signature", 0),
        ("time_signature", 0),
    ]
    assert [(m.type, m.time, getattr(m, "note", None)) for m in out.tracks[1]] == [
        ("track_name", 0, None),
        ("pitchwheel", 0, None),
        ("program_change", 0, None),
        ("note_on", 0, 67),
        ("note_off", 10080, 67),
        ("note_on", 0, 69),
        ("note_off", 5040, 69),
    ]
    assert {m.channel for m in out.tracks[1] if not m.is_meta} == {2}


def test_music21_renders_where_verovio_cannot_and_says_so(tmp_path, monkeypatch):
    source = FIXTURES / "real-scores" / "natural_sharp.musicxml"
    latin = tmp_path / "latin.musicxml"  # not UTF-8: Verovio is not tried, music21 reads the declaration
    text = source.read_text(encoding="utf-8").replace('encoding="UTF-8"', 'encoding="ISO-8859-1"')
    latin.write_bytes(text.replace("<part-name>", "<part-name>Caf\u00e9 ", 1).encode("latin-1"))
    assert b"\xe9" in latin.read_bytes()
    (piece,) = score.file_to_pieces(latin, "midi")
    assert piece.notes == (score.MUSIC21_FALLBACK,)

    def broken(_text: str) -> bytes:
        raise ConversionError("verovio", "Verovio could not read the score")

    monkeypatch.setattr(engraver, "render_midi_bytes", broken)
    (piece,) = score.file_to_pieces(source, "midi")
    assert piece.notes == (score.MUSIC21_FALLBACK, "Verovio: Verovio could not read the score")
    assert engraver.note_events(mido.MidiFile(file=io.BytesIO(piece.text.encode("latin-1"))))


@pytest.mark.parametrize("name", ["bach_bwv11_6.abc", "bach_bwv403.abc"])
def test_interleaved_abc_renders_through_verovio_with_music21s_notes(name, monkeypatch):
    """Interleaved ABC goes ABC -> MusicXML (abc2xml) -> Verovio: the notes music21 renders from that
    MusicXML; where Verovio fails, music21 renders it, said as a note."""
    tune = (FIXTURES / "bench-corpus" / "abc" / name).read_text(encoding="utf-8")
    midi, taken = score.abc_tune_to_midi(tune)
    reference, _ = score.abc_tune_to_midi(tune, renderer="music21")
    by_verovio, by_music21 = (mido.MidiFile(file=io.BytesIO(m)) for m in (midi, reference))
    assert taken == ()
    assert engraver.note_events(by_verovio) == engraver.note_events(by_music21)
    assert abs(patch_count(by_verovio) / patch_count(by_music21) - 1) <= 0.05
    assert score.renderer_of("abc", tune, taken) == "Verovio"

    def broken(_text: str) -> bytes:
        raise ConversionError("verovio", "Verovio could not read the score")

    monkeypatch.setattr(engraver, "render_midi_bytes", broken)
    midi, taken = score.abc_tune_to_midi(tune)
    assert (midi, taken) == (reference, (score.MUSIC21_FALLBACK,))
    assert score.renderer_of("abc", tune, taken) == "music21"


def mei_of(name: str, folder: Path) -> Path:
    """The MEI (5) Verovio writes of a fixture score."""
    import verovio

    xml, _ = score.read_musicxml((FIXTURES / name).read_bytes())
    tk = verovio.toolkit()
    assert tk.loadData(xml.decode("utf-8-sig"))
    path = folder / f"{Path(name).stem}.mei"
    path.write_text(tk.getMEI(), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", SAME_NOTES)
def test_mei_renders_through_verovio_with_music21s_notes(name, tmp_path):
    mei = mei_of(name, tmp_path)
    (piece,) = score.file_to_pieces(mei, "midi")
    assert piece.notes == ()
    assert score.renderer_of("music21", None, piece.notes, mei) == "Verovio"
    by_verovio = mido.MidiFile(file=io.BytesIO(piece.text.encode("latin-1")))
    by_music21 = score_to_midi(FIXTURES / name, renderer="music21")  # music21 reading the MusicXML
    assert by_verovio.ticks_per_beat == engraver.TICKS_PER_BEAT
    assert engraver.note_events(by_verovio) == engraver.note_events(by_music21)
    assert abs(patch_count(by_verovio) / patch_count(by_music21) - 1) <= 0.05
    (mtf,) = score.file_to_pieces(mei, "mtf")  # straight from Verovio's MIDI
    assert mtf.text == mido_to_mtf(by_verovio)


def test_mei_falls_back_to_music21_and_says_why(tmp_path, monkeypatch):
    mei = mei_of("real-scores/natural_sharp.musicxml", tmp_path)  # one that music21's MEI reader reads
    reference = score_to_midi(mei, renderer="music21")
    assert engraver.note_events(reference) == engraver.note_events(score_to_midi(mei))

    def broken(_text: str) -> bytes:
        raise ConversionError("verovio", "Verovio could not read the score")

    monkeypatch.setattr(engraver, "render_midi_bytes", broken)
    (piece,) = score.file_to_pieces(mei, "midi")
    assert piece.notes == (score.MUSIC21_FALLBACK, "Verovio: Verovio could not read the score")
    assert score.renderer_of("music21", None, piece.notes, mei) == "music21"
    assert engraver.note_events(mido.MidiFile(file=io.BytesIO(piece.text.encode("latin-1")))) == (
        engraver.note_events(reference)
    )


def test_the_page_engraves_mei_that_music21_cannot_read(tmp_path):
    from clamp2_engine.serve.render import engrave

    mei = mei_of("real-scores/lied_harmony.musicxml", tmp_path)
    with pytest.raises(ConversionError):
        score_to_midi(mei, renderer="music21")  # music21's MEI reader fails on this one
    assert engrave((str(mei), "")).lstrip().startswith("<svg")


def test_convert_to_mtf_counts_mei_as_rendered_by_verovio(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    mei_of("real-scores/natural_sharp.musicxml", src)
    report = convert_tree(src, dst, "mtf", jobs=1)
    assert report.summary.counts["rendered with Verovio"] == 1
    assert (dst / "natural_sharp.mtf").read_text(encoding="utf-8").startswith("ticks_per_beat 10080")


@pytest.mark.parametrize(
    "content",
    [b"X:1\nK:C\nCDE|\n", b"<?xml version='1.0'?><mei xmlns='http://www.music-encoding.org/ns/mei'>"],
)
def test_a_broken_mei_file_is_one_clear_error(tmp_path, content):
    """Not MEI (Verovio is not tried) or truncated (Verovio cannot read it): music21's reason."""
    bad = tmp_path / "bad.mei"
    bad.write_bytes(content)
    with pytest.raises(ConversionError, match="MEI document is not valid XML"):
        score.file_to_pieces(bad, "mtf")
