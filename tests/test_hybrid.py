"""Finding music by name: the lexical (BM25) side, hybrid fusion, word filters, facets with display values
and reindexing an old collection, on both engines (Qdrant Edge, and qdrant-client's in-memory server
stand-in), through the library's SearchSession."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import identity, spec_for, unit_vec

from clamp2_engine.search import Query, QueryError, SearchSession
from clamp2_engine.search.ranking import hybrid, nearest
from clamp2_engine.store import CollectionError, Point, open_store, point_id
from clamp2_engine.store.backend import Layout
from clamp2_engine.store.fields import canonical_metadata
from clamp2_engine.store.lexical import LEXICAL, lexical_text, query_vector
from clamp2_engine.store.schema import SCHEMA_VERSION

PIECES = [
    ("Für Elise", "Ludwig van Beethoven", {"genre": "bagatelle"}, "A gentle piano piece in A minor.", None),
    ("BWV 278", "J.S. Bach", {"genre": "chorale"}, "A four-part chorale.", None),
    ("The cock and the hen jig", "trad", {"genre": "jig"}, "A lively Irish dance in 6/8.", None),
    ("Die Sonne ist verblichen", "unknown", {"genres": ["Lied"]}, "A folk song.", "Ein trauriges Abendlied"),
    ("Valse triste", "Sibelius", {"genre": "waltz"}, "A slow, sad waltz.", None),
    ("Jesu, meine Freude", "j.s. bach", {"genre": "Chorale"}, "A chorale in E minor.", None),
]
N_NOISE = 40  # pieces without a name anyone types, so that the dense side alone ranks at random


def payload(i: int, title: str, composer: str, meta: dict, en: str, nen: str | None) -> dict:
    return {
        "piece_id": f"k:{i}",
        "corpus": "k",
        "title": title,
        "composer": composer,
        "source": f"scores/piece{i}.abc",
        "metadata": meta,
        "summary_en": en,
        "summary_nen": {"language": "German", "summary": nen} if nen else None,
    }


def points() -> list[Point]:
    named = [Point(point_id(f"k:{i}"), {"abc": unit_vec(i)}, payload(i, *p)) for i, p in enumerate(PIECES)]
    noise = [
        Point(
            point_id(f"n:{i}"),
            {"abc": unit_vec(1000 + i)},
            payload(1000 + i, f"Etude {i}", "Anon", {}, "", None),
        )
        for i in range(N_NOISE)
    ]
    return named + noise


@pytest.fixture(params=["edge", "server"])
def session(request, tmp_path):
    with open_store(spec_for(request.param, tmp_path)) as store:
        coll = store.ensure("music", identity(), {"model": "/m.pth"})
        coll.upsert(points())
        yield SearchSession(coll)


def titles(session: SearchSession, query: Query, vector: np.ndarray | None = None) -> list[str]:
    return [h.payload["title"] for h in session.find(query, vector).hits]


# a dense query vector that points at none of the named pieces
ELSEWHERE = unit_vec(1005)


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("bwv 278", "BWV 278"),
        ("the cock and the hen jig", "The cock and the hen jig"),
        ("die sonne ist verblichen", "Die Sonne ist verblichen"),
        ("fur elise", "Für Elise"),  # accents folded
        ("FÜR ELISE", "Für Elise"),
        ("trauriges abendlied", "Die Sonne ist verblichen"),  # words of the German summary
        ("valse", "Valse triste"),
    ],
)
def test_a_name_typed_in_lower_case_finds_its_piece_first(session, text, title):
    assert titles(session, Query(text=text), ELSEWHERE)[0] == title
    assert titles(session, Query(text=text, mode="lexical"))[0] == title


def test_hybrid_hits_say_how_they_were_found(session):
    result = session.find(Query(text="bwv 278"), ELSEWHERE)
    assert result.mode == "hybrid"
    assert result.notices == []
    assert {h.modality for h in result.hits} == {"hybrid"}
    assert result.hits[0].score > result.hits[1].score  # reciprocal rank fusion scores
    lexical = session.find(Query(text="bwv 278", mode="lexical"))
    assert lexical.mode == "lexical"
    assert [h.modality for h in lexical.hits] == [LEXICAL]


def test_semantic_mode_is_todays_dense_ranking_exactly(session):
    q = unit_vec(3)
    dense = nearest(session.collection, q, modality="any", limit=10)[0]
    result = session.find(Query(text="bwv 278", mode="semantic"), q)
    assert result.mode == "semantic"
    assert [(h.id, h.modality) for h in result.hits] == [(h.id, h.modality) for h in dense]
    assert [h.score for h in result.hits] == pytest.approx([h.score for h in dense], abs=1e-6)


def test_a_name_and_meaning_together(session):
    """The words narrow to the chorales, the vector picks the one it points at."""
    hits = titles(session, Query(text="a bach chorale"), unit_vec(5))
    assert hits[0] == "Jesu, meine Freude"
    assert "BWV 278" in hits[:3]


def test_lexical_weight_zero_leaves_meaning_alone(session):
    hits = session.find(Query(text="bwv 278", weights=(1.0, 0.0)), unit_vec(4)).hits
    assert hits[0].payload["title"] == "Valse triste"  # unit_vec(4): the dense side's own first


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ("composer=bach", {"BWV 278", "Jesu, meine Freude"}),  # a word of the value, any case
        ("composer=BACH", {"BWV 278", "Jesu, meine Freude"}),
        ("composer=j.s. bach", {"BWV 278", "Jesu, meine Freude"}),
        ("composer==J.S. Bach", {"BWV 278"}),  # the exact display value
        ("composer=beethoven", {"Für Elise"}),
        ("genre=chorale", {"BWV 278", "Jesu, meine Freude"}),  # genre is genres
        ("genres=lied,waltz", {"Die Sonne ist verblichen", "Valse triste"}),
    ],
)
def test_filters_match_words_or_exact_values(session, flt, expected):
    hits = session.find(Query(text="music", mode="semantic", filters=(flt,), k=50), ELSEWHERE).hits
    assert {h.payload["title"] for h in hits} == expected


def test_negated_word_filter(session):
    hits = session.find(Query(text="x", mode="semantic", filters=("composer!=bach",), k=100), ELSEWHERE).hits
    assert len(hits) == len(PIECES) + N_NOISE - 2


def test_empty_filtered_result_names_display_values(session):
    result = session.find(Query(text="x", mode="semantic", filters=("composer==bach",)), ELSEWHERE)
    assert result.hits == []
    assert result.why == "no piece has composer 'bach'; closest: 'J.S. Bach'"


def test_facets_are_display_values_with_counts(session):
    genres = {v.lower(): n for v, n in session.collection.facet("genres")}
    assert genres["chorale"] == 2  # "chorale" and "Chorale" counted together
    assert {"bagatelle", "jig", "lied", "waltz"} <= set(genres)
    composers = dict(session.collection.facet("composer"))
    assert composers["J.S. Bach"] == 2
    assert composers["Anon"] == N_NOISE


def test_ingest_names_become_one_field(session):
    found = session.collection.retrieve([point_id("k:1")])[0]
    assert found.payload["metadata"] == {"genres": ["chorale"]}
    assert canonical_metadata({"genre": "jig", "genres": ["reel"], "composers": ["A", "B"]}) == {
        "genres": ["reel", "jig"],
        "composer": ["A", "B"],
    }


def test_query_checks():
    with pytest.raises(QueryError, match="empty"):
        Query(text="  \x00 ")
    with pytest.raises(QueryError, match="mode"):
        Query(text="x", mode="fuzzy")


def test_lexical_text_holds_what_people_type():
    text = lexical_text(payload(1, *PIECES[3]) | {"source": "folk/sonne_verblichen-op12.krn"})
    for word in (
        "Die Sonne ist verblichen",
        "unknown",
        "Lied",
        "A folk song.",
        "Ein trauriges",
        "op 12",
        "k",
    ):
        assert word in text
    assert query_vector("Für Elise") == query_vector("fur elise")
    assert len(query_vector("BWV 278").indices) == 2  # numbers are words


# --- collections made before hybrid search -----------------------------------------------------------


@pytest.fixture(params=["edge", "server"])
def old_store(request, tmp_path):
    """A collection as clamp2-engine 0.1 wrote it: no lexical vector, keyword `keys`, `genre`."""
    from clamp2_engine.store.schema import CollectionRecord, new_record

    with open_store(spec_for(request.param, tmp_path)) as store:
        record = new_record(identity(), {"model": "/m.pth"}).as_dict() | {"schema": 2, "lexical": False}
        old_indexes = [("corpus", "keyword"), ("keys.composer", "keyword"), ("keys.genre", "keyword")]
        store.backend.create("old", Layout(8, tuple(old_indexes), lexical=False), record)
        raw = [
            Point(p.id, p.vectors, {**p.payload, "keys": {"composer": p.payload["composer"].lower()}})
            for p in points()
        ]
        store.backend.upsert("old", raw)
        assert CollectionRecord.from_dict(store.backend.read_meta("old"), "old").lexical is False
        yield store


def test_an_old_collection_searches_by_meaning_and_says_why(old_store):
    session = SearchSession(old_store.collection("old"))
    result = session.find(Query(text="bwv 278"), unit_vec(3))
    dense = nearest(session.collection, unit_vec(3), limit=10)[0]
    assert result.mode == "semantic"
    assert [h.id for h in result.hits] == [h.id for h in dense]
    assert "no lexical index" in result.notices[0]
    assert "reindex" in result.notices[0]
    with pytest.raises(QueryError, match="no lexical index"):
        session.find(Query(text="bwv 278", mode="lexical"))
    with pytest.raises(CollectionError, match="no lexical index"):
        hybrid(session.collection, None, "bwv 278")


def test_reindex_adds_the_lexical_side_and_changes_no_vector(old_store):
    coll = old_store.collection("old")
    before = {p.id: p.vectors for page in coll.scroll(vectors=True) for p in page}
    assert coll.reindex(page=16) == len(PIECES) + N_NOISE
    reopened = old_store.collection("old")
    assert reopened.record.lexical
    assert reopened.record.schema == SCHEMA_VERSION
    after = {p.id: p.vectors for page in reopened.scroll(vectors=True) for p in page}
    assert after.keys() == before.keys()
    for pid, vectors in before.items():
        assert set(after[pid]) == {"abc", LEXICAL}
        assert after[pid]["abc"] == vectors["abc"]  # bit for bit
    assert reopened.info()["vectors"][LEXICAL] == len(PIECES) + N_NOISE
    session = SearchSession(reopened)
    result = session.find(Query(text="fur elise"), ELSEWHERE)
    assert result.notices == []
    assert result.hits[0].payload["title"] == "Für Elise"
    assert {
        h.payload["title"]
        for h in session.find(Query(filters=("composer=bach",), text="x"), ELSEWHERE).hits[:2]
    }
    assert {v.lower(): n for v, n in reopened.facet("genres")}["chorale"] == 2
    assert reopened.retrieve([point_id("k:2")])[0].payload["metadata"] == {"genres": ["jig"]}
    assert reopened.reindex() == len(PIECES) + N_NOISE  # again: harmless


# --- the command line ------------------------------------------------------------------------------------


def cli(*args: object, input: str | None = None):
    from click.testing import CliRunner

    from clamp2_engine.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def edge_folder(tmp_path):
    """The pieces in an embedded store, closed again so that the commands can open it."""
    folder = tmp_path / "edge"
    with open_store(spec_for("edge", tmp_path, "edge")) as store:
        store.ensure("music", identity(), {"model": "/m.pth"}).upsert(points())
    return folder


def test_cli_lexical_search_needs_no_model(edge_folder):
    res = cli(
        "search", "fur elise", "-c", "music", "--mode", "lexical", "--json", "--qdrant-path", edge_folder
    )
    assert res.exit_code == 0, res.output
    first = json.loads(res.stdout.splitlines()[0])
    assert first["title"] == "Für Elise"
    assert first["modality"] == LEXICAL
    res = cli(
        "search",
        "jig",
        "-c",
        "music",
        "--mode",
        "lexical",
        "--filter",
        "composer==J.S. Bach",
        "--qdrant-path",
        edge_folder,
    )
    assert res.exit_code == 0
    assert "no hits" in res.output


def test_cli_shell_switches_mode(edge_folder):
    script = ":mode lexical\nbwv 278\n:mode fuzzy\n:quit\n"
    res = cli(
        "shell", "-c", "music", "--mode", "lexical", "--json", "--qdrant-path", edge_folder, input=script
    )
    assert res.exit_code == 0, res.output
    hits = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert hits[0]["title"] == "BWV 278"
    assert "mode = lexical" in res.output
    assert ":mode takes one of hybrid, semantic, lexical" in res.output


def test_cli_reindex_an_old_collection(tmp_path):
    from clamp2_engine.store.schema import new_record

    folder = tmp_path / "edge"
    with open_store(spec_for("edge", tmp_path, "edge")) as store:
        record = new_record(identity(), {"model": "/m.pth"}).as_dict() | {"schema": 2, "lexical": False}
        store.backend.create("old", Layout(8, (("corpus", "keyword"),), lexical=False), record)
        store.backend.upsert("old", points())
    res = cli("search", "bwv 278", "-c", "old", "--mode", "lexical", "--qdrant-path", folder)
    assert res.exit_code == 1
    assert "no lexical index" in res.output
    assert "reindex" in res.output
    res = cli("collections", "reindex", "old", "--json", "--qdrant-path", folder)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["points"] == len(PIECES) + N_NOISE
    res = cli("search", "bwv 278", "-c", "old", "--mode", "lexical", "--json", "--qdrant-path", folder)
    assert json.loads(res.stdout.splitlines()[0])["title"] == "BWV 278"
    info = json.loads(cli("collections", "info", "old", "--json", "--qdrant-path", folder).stdout)
    assert info["lexical"]
    assert info["vectors"][LEXICAL] == len(PIECES) + N_NOISE


# --- words in every language ------------------------------------------------------------------------------

WORLD = [
    ("茉莉花", "中国民歌", {"genre": "folk song"}, "A Chinese folk song.", "旋律优美，适合独唱"),
    ("さくらさくら", "日本古謡", {"genre": "folk song"}, "A Japanese folk song about cherry blossoms.", None),
    ("荒城の月", "滝廉太郎", {"genre": "song"}, "A song of a ruined castle under the moon.", None),
    ("เพลงไทยเดิม", "ครูเพลง", {"genre": "folk song"}, "A Thai classical song.", None),
    ("아리랑", "민요", {"genre": "folk song"}, "A Korean folk song.", None),
    (
        "Der Lindenbaum",
        "Franz Schubert",
        {"genre": "Lied", "titles": ["Am Brunnen vor dem Tore"]},
        "A song.",
        None,
    ),
    ("BWV 278", "J.S. Bach", {"genre": "chorale"}, "A four-part chorale.", None),
]


@pytest.fixture(params=["edge", "server"])
def world(request, tmp_path):
    with open_store(spec_for(request.param, tmp_path)) as store:
        coll = store.ensure("world", identity(), {"model": "/m.pth"})
        coll.upsert(
            [
                Point(point_id(f"w:{i}"), {"abc": unit_vec(200 + i)}, payload(i, *p))
                for i, p in enumerate(WORLD)
            ]
            + [
                Point(
                    point_id(f"n:{i}"),
                    {"abc": unit_vec(900 + i)},
                    payload(900 + i, f"Etude {i}", "Anon", {}, "", None),
                )
                for i in range(20)
            ]
        )
        yield SearchSession(coll)


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("茉莉", "茉莉花"),  # part of an unsegmented title
        ("茉莉花", "茉莉花"),
        ("旋律", "茉莉花"),  # a word of the Chinese summary
        ("さくら", "さくらさくら"),
        ("日本", "さくらさくら"),  # part of the composer 日本古謡
        ("荒城", "荒城の月"),
        ("滝廉太郎", "荒城の月"),
        ("เพลงไทย", "เพลงไทยเดิม"),  # Thai, part of the title
        ("아리", "아리랑"),
        ("bwv 278", "BWV 278"),  # numbers kept
        ("lindenbaum", "Der Lindenbaum"),
        ("brunnen vor dem tore", "Der Lindenbaum"),  # another title the file gives
    ],
)
def test_part_of_a_name_in_any_script_finds_its_piece(world, text, title):
    assert titles(world, Query(text=text, mode="lexical"))[0] == title
    assert titles(world, Query(text=text), ELSEWHERE)[0] == title


def test_hybrid_ranks_a_chinese_query_by_its_words(world):
    assert (
        titles(world, Query(text="中国民歌"), unit_vec(205))[0] == "茉莉花"
    )  # the vector points at Lindenbaum


def test_when_no_word_matches_hybrid_says_so_and_ranks_by_meaning(world):
    from clamp2_engine.search.session import NO_WORD_MATCHED

    result = world.find(Query(text="xyzzy plugh"), unit_vec(205))
    assert result.notices == [NO_WORD_MATCHED]
    assert result.hits[0].payload["title"] == "Der Lindenbaum"  # the vector's own nearest
    assert result.hits[0].modality == "abc"
    assert world.find(Query(text="lindenbaum"), unit_vec(205)).notices == []


def test_lexical_weight_help_states_the_codes_default():
    from click.testing import CliRunner

    from clamp2_engine.cli import main
    from clamp2_engine.search.fusion import WEIGHTS

    shown = " ".join(CliRunner().invoke(main, ["search", "--help"]).output.split())
    assert f"(default {WEIGHTS[1]:g})" in shown


def test_reindex_upgrades_an_older_lexical_index_without_reembedding(world):
    from dataclasses import replace

    from clamp2_engine.store.lexical import SparseVector, _model

    coll = world.collection
    old = []  # lexical vectors as an older engine made them: Word tokens alone
    for points in coll.scroll(vectors=True):
        for p in points:
            v = _model().embed_document(lexical_text(p.payload))
            old.append(Point(p.id, {LEXICAL: SparseVector(tuple(v.indices), tuple(v.values))}, p.payload))
    coll.backend.rewrite(coll.name, old)
    coll.write_record(replace(coll.record, schema=3))
    before = world.find(Query(text="茉莉", mode="lexical"))
    assert before.hits == []
    assert "collections reindex world" in before.notices[0]
    dense = {p.id: p.vectors["abc"] for page in coll.scroll(vectors=True) for p in page}
    coll.reindex()
    after = world.find(Query(text="茉莉", mode="lexical"))
    assert [h.payload["title"] for h in after.hits][:1] == ["茉莉花"]
    assert after.notices == []
    again = {p.id: p.vectors["abc"] for page in coll.scroll(vectors=True) for p in page}
    assert all(np.allclose(dense[k], again[k]) for k in dense)  # vectors untouched
