"""Real scores: renderings that survive repeats, harmony annotations and unusual accidentals; metadata
from every format into one schema; the CLI's rough edges on real data. The fixtures in
tests/fixtures/real-scores were written for these tests (CC0): a Humdrum chorale ending a section with
``=:|!``, a Lied in MusicXML with movement and work titles and harmony functions, a study with a
``natural-sharp`` accidental and credit-words, a MIDI file with track names, copyright and text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from index_helpers import model_args

from clamp2_engine.cli import main
from clamp2_engine.music.convert.m21 import UNEXPANDED
from clamp2_engine.music.convert.score import file_to_pieces, plain_accidentals
from clamp2_engine.music.describe import file_metadata, key_name, music_metadata

REAL = Path(__file__).parent / "fixtures" / "real-scores"


@pytest.mark.parametrize(
    ("name", "abc_notes", "midi_notes"),
    [
        ("chorale_repeats.krn", (), (UNEXPANDED,)),
        ("lied_harmony.musicxml", (), ()),  # Verovio reads its harmony annotations
        ("natural_sharp.musicxml", ("repaired MusicXML",), ()),
    ],
)
def test_renderings_survive_real_scores(name, abc_notes, midi_notes):
    [abc] = file_to_pieces(REAL / name, "abc")
    [midi] = file_to_pieces(REAL / name, "midi")
    assert abc.notes == abc_notes
    assert midi.notes == midi_notes
    assert abc.text.count("[V:") > 0
    assert midi.text.startswith("MThd")


def test_music21_rendering_still_reads_scores_without_their_harmony_annotations():
    """Where music21 renders (asked for, or where Verovio fails), a score it cannot read for its harmony
    annotations is read without them, and says so."""
    [midi] = file_to_pieces(REAL / "lied_harmony.musicxml", "midi", renderer="music21")
    assert midi.notes == ("without harmony annotations",)
    assert midi.text.startswith("MThd")


SINGLE_VOICE = "X:1\nL:1/8\nM:4/4\nK:G\nV:1 treble\n[V:1]B2 c2 d2 d2|\n[V:1]G2 A2 B4|\n"


@pytest.mark.parametrize("interleaved", [True, False])
def test_interleaved_voices_render_through_abc2xml_first(monkeypatch, interleaved):
    """music21's ABC reader makes no measures of voices interleaved bar by bar (model input, xml2abc's
    output), so its rendering fails: such tunes go through abc2xml first, that MusicXML rendered by Verovio
    (music21's from it with ``renderer="music21"``), no note; a single voice still goes through music21's
    ABC reader."""
    from clamp2_engine.music.convert import abctools, engraver, m21
    from clamp2_engine.music.convert.score import abc_tune_to_midi

    bench = Path(__file__).parent / "fixtures" / "bench-corpus" / "abc"
    tune = (bench / "bach_bwv11_6.abc").read_text(encoding="utf-8") if interleaved else SINGLE_VOICE
    read = m21.parse_text
    calls: list[str] = []
    monkeypatch.setattr(m21, "parse_text", lambda text, fmt: calls.append(fmt) or read(text, fmt))
    midi, notes = abc_tune_to_midi(tune)
    assert notes == ()
    assert calls == ([] if interleaved else ["abc"])
    if interleaved:
        assert midi == engraver.render_midi_bytes(abctools.abc2xml(tune)[0])
        via_xml = m21.stream_to_midis(m21.parse_xml(abctools.abc2xml(tune)[0].encode()))[0][1]
        assert abc_tune_to_midi(tune, renderer="music21") == (via_xml, ())
        with pytest.raises(Exception, match="measures"):
            m21.stream_to_midis(read(tune, "abc"))


def test_unusual_accidentals_become_the_sounding_one():
    from xml.etree import ElementTree

    tree = ElementTree.ElementTree(ElementTree.fromstring((REAL / "natural_sharp.musicxml").read_bytes()))
    assert plain_accidentals(tree)
    assert [a.text for a in tree.iter("accidental")] == ["sharp", "natural"]
    [abc] = file_to_pieces(REAL / "natural_sharp.musicxml", "abc")
    assert "^e2 =f2" in abc.text


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "chorale_repeats.krn",
            {
                "composer": "Bach, Johann Sebastian",
                "title": "Aus meines Herzens Grunde",
                "catalog": "BWV 269",
                "instruments": ["Bass", "Tenor", "Alto", "Soprano"],
            },
        ),
        (
            "lied_harmony.musicxml",
            {
                "title": "Wiegenlied",
                "work_title": "6 Lieder, Op. 10",
                "movement": "3",
                "composer": "Clara Example",
                "lyricist": "Anna Dichterin",
                "instruments": ["Singstimme", "Pianoforte"],
            },
        ),
        ("natural_sharp.musicxml", {"title": "Kleine Etüde", "composer": "Ernst Beispiel"}),
        (
            "greensleeves_tracks.mid",
            {
                "title": "Greensleeves",
                "instruments": ["Flute", "Lute"],
                "rights": "CC0, written for clamp2-engine's tests",
                "comments": "An old English tune, arranged for flute and lute",
            },
        ),
    ],
)
def test_each_format_states_its_metadata(name, expected):
    found = file_metadata(REAL / name)
    assert {k: found.get(k) for k in expected} == expected


def test_abc_header_fields(tmp_path):
    book = tmp_path / "book.abc"
    book.write_text(
        "X:1\nT:The Kesh\nT:The Kesh Jig\nC:Trad.\nR:Jig\nO:Ireland\nM:6/8\nK:G\nGAG GAB|\n\n"
        "X:2\nT:Si Bheag\nR:waltz\nM:3/4\nK:D\nA2 d2 f2|\n",
        encoding="utf-8",
    )
    assert file_metadata(book) == {
        "title": "The Kesh",
        "titles": ["The Kesh Jig"],  # every later T: is another title
        "composer": "Trad.",
        "genres": ["jig"],
        "origin": "Ireland",
    }
    assert file_metadata(book, "2") == {"title": "Si Bheag", "genres": ["waltz"]}


def test_music_states_meter_key_voices_instruments():
    [abc] = file_to_pieces(REAL / "lied_harmony.musicxml", "abc")
    assert music_metadata(abc.text) == {
        "meter": "3/4",
        "key": "F major",
        "voices": 2,
        "instruments": ["Singstimme", "Pianoforte"],  # the staff name's "\n\t\t\t:" is gone
        "bars": 3,
    }
    assert [key_name(k) for k in ("G", "Ebm", "ADor", "F#min", "none", "HP")] == [
        "G major",
        "E♭ minor",
        "A dorian",
        "F♯ minor",
        None,
        None,
    ]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, parity_dir):
    root = tmp_path_factory.mktemp("real")
    corpus = root / "real-scores"
    shutil.copytree(REAL, corpus)
    store = root / "edge"
    base = ["--qdrant-path", str(store)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAMP2_HOME", str(root / "home"))
        res = CliRunner().invoke(
            main,
            ["ingest", str(corpus), "-c", "real", *base, "--jobs", "1", *map(str, model_args(parity_dir))],
        )
    assert res.exit_code == 0, res.output
    return root, base, res.output


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_every_real_score_is_ingested_with_both_music_vectors_and_notes(ingested):
    root, base, output = ingested
    assert "2 note(s) on fallbacks taken" in output  # Verovio renders lied_harmony as it is
    assert "problem(s)" not in output
    assert "render: render:" not in output
    log = root / "home" / "ingest" / "real.errors.jsonl"
    notes = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert {(Path(n["source"]).name, n["stage"]) for n in notes} == {
        ("chorale_repeats.krn", "note"),
        ("natural_sharp.musicxml", "note"),
    }
    res = run("collections", "info", "real", *base, "--json")
    info = json.loads(res.output)
    assert info["points"] == 4
    assert info["vectors"]["mtf"] == 4  # every score rendered, the MIDI as it is
    assert info["vectors"]["abc"] == 3


@pytest.mark.parametrize(
    ("query", "filters", "source"),
    [
        ("wiegenlied", [], "lied_harmony.musicxml"),
        ("aus meines herzens grunde", [], "chorale_repeats.krn"),
        ("greensleeves", [], "greensleeves_tracks.mid"),
        ("lute", [], "greensleeves_tracks.mid"),
        ("lied", ["work_title=lieder", "meter=3/4"], "lied_harmony.musicxml"),
        ("chorale", ["composer=bach", "key==G major", "voices==4"], "chorale_repeats.krn"),
        ("etude", ["instruments=flute", "composer=beispiel"], "natural_sharp.musicxml"),
    ],
)
def test_metadata_is_searchable_and_filterable(ingested, query, filters, source):
    _root, base, _ = ingested
    args = ["search", query, "-c", "real", *base, "--mode", "lexical", "--json", "-k", "1"]
    for f in filters:
        args += ["--filter", f]
    res = run(*args)
    assert res.exit_code == 0, res.output
    [hit] = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert hit["payload"]["source"] == source


def test_hits_show_the_metadata(ingested):
    _root, base, _ = ingested
    res = run("search", "wiegenlied", "-c", "real", *base, "--mode", "lexical", "-k", "1")
    assert "Wiegenlied" in res.output
    assert "3/4" in res.output


# the CLI's rough edges


@pytest.mark.parametrize("query", ["", "   ", "\t"])
def test_an_empty_query_is_one_usage_error(ingested, query):
    _root, base, _ = ingested
    res = run("search", query, "-c", "real", *base)
    assert res.exit_code == 2
    assert "give a QUERY text, --music FILE or --like ID" in res.output
    assert "Traceback" not in res.output


def test_no_hits_says_why_without_an_empty_table(ingested):
    _root, base, _ = ingested
    res = run("search", "zzzz", "-c", "real", *base, "--mode", "lexical")
    assert res.output.strip() == "no hits"
    res = run("search", "wiegenlied", "-c", "real", *base, "--mode", "semantic", "--modality", "text")
    assert "┏" not in res.output
    assert "no hits: collection 'real' has no text vectors (no piece has a summary)" in res.output


def test_a_modality_without_vectors_is_said_in_hybrid_search(ingested):
    _root, base, _ = ingested
    res = run("search", "wiegenlied", "-c", "real", *base, "--modality", "text")
    assert "has no text vectors (no piece has a summary): matched by words alone" in res.output


def test_a_query_book_says_which_tune(ingested, tmp_path):
    _root, base, _ = ingested
    book = tmp_path / "book.abc"
    book.write_text(
        "X:1\nT:First\nM:3/4\nL:1/8\nK:G\nG2 A2 B2|c6|]\n\nX:7\nT:Seventh\nM:3/4\nL:1/8\nK:D\nd2 e2 f2|g6|]\n",
        encoding="utf-8",
    )
    res = run("search", "-c", "real", *base, "--music", str(book), "-k", "1")
    assert res.exit_code == 0, res.output
    assert (
        "book.abc holds 2 pieces: searching by number 1 (First); choose another by its number" in res.output
    )
    res = run("search", "-c", "real", *base, "--music", str(book), "--tune", "7", "-k", "1")
    assert "searching by number 7 (Seventh)" in res.output
    res = run("search", "-c", "real", *base, "--music", str(book), "--tune", "3")
    assert res.exit_code == 1
    assert "no tune 3 in book.abc (it holds 1, 7)" in res.output


def test_convert_names_the_target_for_files_it_leaves(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REAL / "greensleeves_tracks.mid", src)
    res = run("convert", str(src), str(tmp_path / "out"), "--to", "abc")
    assert "note: 1 MIDI file(s) left as they are: --to abc does not take them (use --to mtf)" in res.output


def test_a_rerun_reports_the_collection_total(ingested, parity_dir):
    root, base, _ = ingested
    res = run(
        "ingest",
        str(root / "real-scores"),
        "-c",
        "real",
        *base,
        "--jobs",
        "1",
        *map(str, model_args(parity_dir)),
    )
    assert res.exit_code == 0, res.output
    assert "points written" in res.output
    assert "points in the collection" in res.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in res.output.splitlines()
        if line.count("│") == 3
    }
    assert rows["skipped"] == "4"
    assert rows["points written"] == "0"
    assert rows["points in the collection"] == "4"


def test_progress_off_a_terminal_is_a_plain_line_now_and_then(monkeypatch, capsys):
    from clamp2_engine import runlog

    advance = runlog.plain_progress("ingest x", 3)
    advance(1)  # short work says nothing
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(runlog, "PLAIN_EVERY", 0.0)
    advance(1, note="2 pieces")
    advance(1)
    assert capsys.readouterr().err.splitlines() == ["ingest x: 2/3 (2 pieces)", "ingest x: 3/3"]


def test_like_scores_are_explained_in_the_help():
    res = run("search", "--help")
    assert "sigmoid of the best similarity" in " ".join(res.output.split())


def test_staff_names_are_clean_where_abc_becomes_musicxml():
    from clamp2_engine.music.convert import score_to_interleaved_abc
    from clamp2_engine.music.convert.score import abc_to_musicxml

    [(_sfx, abc)] = score_to_interleaved_abc(REAL / "lied_harmony.musicxml")
    assert 'nm="\\n' in abc  # xml2abc keeps the part name's line break (the reference's ABC, unchanged)
    xml = abc_to_musicxml(abc)
    assert "<part-name>Pianoforte</part-name>" in xml
    assert "\\n" not in xml
