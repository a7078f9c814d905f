"""Every name a file gives finds its piece: a second ``T:`` line, a MIDI file's track name (its title
when it names no instrument) and its meter and key from meta events, through ingest and lexical search."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import pytest
from click.testing import CliRunner

from clamp2_engine.cli import main
from clamp2_engine.music.describe import midi_metadata, names_instrument

TUNE = "X:1\nT:Der Lindenbaum\nT:Zebrafish Waltz\nC:Franz Schubert\nM:3/4\nL:1/8\nK:G\nGAB cde|d6|]\n"


def nocturne(path: Path, name: str = "Nocturne for a Rainy Tuesday") -> Path:
    """A one-track MIDI file whose track is named ``name``, in 3/4 and A minor."""
    mid = mido.MidiFile(type=1)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("track_name", name=name))
    track.append(mido.MetaMessage("time_signature", numerator=3, denominator=4))
    track.append(mido.MetaMessage("key_signature", key="Am"))
    track.append(mido.Message("program_change", program=0))
    for note in (57, 60, 64, 69):
        track.append(mido.Message("note_on", note=note, velocity=64))
        track.append(mido.Message("note_off", note=note, time=240))
    mid.save(path)
    return path


def test_a_midi_file_names_itself(tmp_path):
    found = midi_metadata(nocturne(tmp_path / "n.mid"))
    assert found["title"] == "Nocturne for a Rainy Tuesday"
    assert (found["meter"], found["key"]) == ("3/4", "A minor")
    assert found["instruments"] == ["Piano"]  # the General MIDI program, not the track's name
    named = midi_metadata(nocturne(tmp_path / "p.mid", "Piano right hand"))
    assert "title" not in named
    assert named["instruments"] == ["Piano right hand"]


@pytest.mark.parametrize(
    ("name", "instrument"),
    [("Vln. 1", True), ("Violin 1", True), ("Tenor", True), ("Track 3", True), ("Sakura", False)],
)
def test_which_track_names_name_an_instrument(name, instrument):
    assert names_instrument(name) is instrument


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_every_name_a_file_gives_finds_its_piece(tmp_path):
    folder = tmp_path / "pieces"
    folder.mkdir()
    (folder / "tune.abc").write_text(TUNE, encoding="utf-8")
    nocturne(folder / "track.mid")
    res = run("ingest", folder, "-c", "names", "--model", "demo", "--jobs", "0", "--no-render")
    assert res.exit_code == 0, res.output

    def first(*args: str) -> dict:
        out = run("search", *args, "-c", "names", "--json", "-k", "1")
        return json.loads(out.output.splitlines()[0])

    assert first("zebrafish", "--mode", "lexical")["source"] == "tune.abc"  # the second T: line
    assert first("rainy tuesday", "--mode", "lexical")["source"] == "track.mid"  # the track's name
    hit = first("nocturne", "--mode", "lexical")
    assert hit["title"] == "Nocturne for a Rainy Tuesday"
    assert (hit["payload"]["metadata"]["meter"], hit["payload"]["metadata"]["key"]) == ("3/4", "A minor")
    assert (
        first("x", "--filter", "meter=3/4", "--filter", "key=minor", "--mode", "semantic")["source"]
        == "track.mid"
    )
