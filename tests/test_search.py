"""The command line end to end on the fixture model: ingest, search (text, MIDI, ABC), shell,
collections, migrate, and the store's errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from index_helpers import cos, model_args

from clamp2_engine.cli import main
from clamp2_engine.store import MEMORY, StoreSpec, open_store

QUERY = "a solemn chorale for four voices"
pytestmark = pytest.mark.slow  # one ~30 s ingest of the parity inputs, shared by the module


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory, parity_dir):
    """The parity inputs ingested through the CLI (no rendering: fast) into an embedded store."""
    root = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAMP2_HOME", str(root / "home"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.delenv("CLAMP2_QDRANT_URL", raising=False)
        res = run(
            "ingest",
            parity_dir / "inputs",
            "-c",
            "music",
            "--qdrant-path",
            root / "qdrant",
            "--no-render",
            "--jobs",
            "1",
            "--json",
            *model_args(parity_dir),
        )
    assert res.exit_code == 0, res.output
    return root / "qdrant", json.loads(res.stdout)


@pytest.fixture
def loads(monkeypatch):
    """Every model load: the towers asked for."""
    import clamp2_engine.pretrained as pretrained
    from clamp2_engine.loading import LoadOptions

    calls: list[dict] = []
    real = pretrained.build

    def spy(options=None):
        towers = LoadOptions.of(options).towers
        calls.append({"music": "music" in towers, "text": "text" in towers})
        return real(options)

    monkeypatch.setattr(pretrained, "build", spy)
    return calls


def hits_of(res) -> list[dict]:
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def test_ingest_report(store):
    _, report = store
    assert report["units"] == report["points"] == 43
    assert report["failed"] == 0
    assert report["vectors"] == {"abc": 22, "mtf": 21, "text": 0}
    assert report["layout"] == "plain"


def test_text_search_json_and_the_query_vector(store, text_model, loads):
    path, _ = store
    res = run("search", QUERY, "-c", "music", "--qdrant-path", path, "--json", "-k", "7")
    hits = hits_of(res)
    assert loads == [{"music": False, "text": True}]  # a one-shot text search loads the text tower only
    assert [h["rank"] for h in hits] == list(range(1, 8))
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # no word of the query names a piece here: ranked by meaning alone, and said so
    assert "no word of the query matched any piece" in res.stderr
    assert {h["modality"] for h in hits} <= {"abc", "mtf"}
    worded = hits_of(run("search", "bach", "-c", "music", "--qdrant-path", path, "--json"))
    assert {h["modality"] for h in worded} == {"hybrid"}  # meaning and words, fused
    semantic = hits_of(
        run("search", QUERY, "-c", "music", "--qdrant-path", path, "--json", "--mode", "semantic")
    )
    assert {h["modality"] for h in semantic} <= {"abc", "mtf"}
    for h in hits:
        assert set(h) >= {"id", "score", "title", "composer", "source", "modality", "payload"}
        assert h["payload"]["source"] == h["source"]
        assert h["payload"]["corpus"] == "inputs"
    # the query's vector is encode_text(QUERY): every semantic score is its cosine with the stored vector
    query = text_model.encode_text(QUERY)
    with open_store(StoreSpec(path=path)) as s:
        stored = {
            p.id: p.vectors for p in s.collection("music").retrieve([h["id"] for h in semantic], vectors=True)
        }
    for h in semantic:
        assert cos(query, stored[h["id"]][h["modality"]]) == pytest.approx(h["score"], abs=1e-5)


def test_text_search_table(store):
    path, _ = store
    res = run("search", QUERY, "-c", "music", "--qdrant-path", path, "--modality", "abc", "-k", "3")
    assert res.exit_code == 0, res.output
    for column in ("rank", "score", "title", "composer", "path", "modality"):
        assert column in res.stdout
    assert res.stdout.count("abc") >= 3


@pytest.mark.parametrize(
    ("query", "same"),
    [
        # a MIDI file and the MTF made from it are the same model input
        (
            "midi/render_bach_bwv66_6.mid",
            {
                "midi/render_bach_bwv66_6.mid",
                "mtf/render_bach_bwv66_6.mtf",
                "midi_roundtrip/render_bach_bwv66_6.mid",
            },
        ),
        # an interleaved ABC file, the score it came from and its standard ABC give the same ABC
        (
            "abc/bach_bwv66_6.abc",
            {"abc/bach_bwv66_6.abc", "xml/bach_bwv66_6.mxl", "abc_standard/bach_bwv66_6.abc"},
        ),
    ],
)
def test_search_by_example(store, parity_dir, loads, query, same):
    path, _ = store
    res = run(
        "search", "--music", parity_dir / "inputs" / query, "-c", "music", "--qdrant-path", path, "--json"
    )
    hits = hits_of(res)
    assert loads == [{"music": True, "text": False}]
    top = hits[: len(same)]
    assert {h["source"] for h in top} == same
    assert all(h["score"] == pytest.approx(1.0, abs=1e-5) for h in top)


def test_filters(store):
    path, _ = store
    hits = hits_of(
        run("search", QUERY, "-c", "music", "--qdrant-path", path, "--json", "--filter", "formats=mid")
    )
    assert len(hits) == 10
    assert all(h["source"].endswith(".mid") for h in hits)
    res = run("search", QUERY, "-c", "music", "--qdrant-path", path, "--filter", "corpus=elsewhere")
    assert res.exit_code == 0
    assert "no hits" in res.stdout
    res = run("search", QUERY, "-c", "music", "--qdrant-path", path, "--filter", "composer")
    assert res.exit_code == 2
    assert "bad filter" in res.output


def test_filters_ignore_case_and_explain_an_empty_result(store, loads):
    path, _ = store
    base = ["search", QUERY, "-c", "music", "--qdrant-path", path]
    exact = hits_of(run(*base, "--json", "--filter", "composer=Arcangelo Corelli"))
    assert exact
    assert hits_of(run(*base, "--json", "--filter", "composer=ARCANGELO corelli")) == exact
    res = run(*base, "--filter", "composer=Arcangelo Coreli")
    assert res.exit_code == 0
    assert "no hits: no piece has composer 'arcangelo coreli'; closest: 'Arcangelo Corelli'" in res.stdout
    assert hits_of(run(*base, "--json", "--filter", "composer=corelli")) == exact  # a word of the value
    assert (
        hits_of(run(*base, "--json", "--filter", "composer==Arcangelo Corelli")) == exact
    )  # the exact value
    res = run(*base, "--filter", "composer==arcangelo corelli")
    assert "closest: 'Arcangelo Corelli'" in res.stdout
    res = run(*base, "--filter", "colour=red")
    assert "no hits: no piece has a field 'colour'" in res.stdout
    res = run(*base, "--json", "--filter", "formats=mid", "--filter", "formats!=mid")
    assert res.stdout == ""
    assert "no piece matches all the filters together" in res.stderr
    loads.clear()
    res = run(*base, "--filter", "a..b=1")
    assert res.exit_code == 2
    assert loads == []


def test_like_unlike_and_diverse(store, loads):
    path, _ = store
    base = ["-c", "music", "--qdrant-path", path, "--json"]
    first = hits_of(run("search", QUERY, *base, "-k", "3"))
    loads.clear()
    like = hits_of(run("search", "--like", first[0]["id"], *base, "-k", "5"))
    assert loads == []  # by example from the collection: no model at all
    assert len(like) == 5
    assert first[0]["id"] not in {h["id"] for h in like}
    unlike = hits_of(run("search", "--like", first[0]["id"], "--unlike", like[0]["id"], *base, "-k", "5"))
    assert like[0]["id"] not in {h["id"] for h in unlike}
    steered = hits_of(run("search", QUERY, "--like", first[1]["id"], *base, "-k", "3"))
    assert len(steered) == 3
    assert first[1]["id"] not in {h["id"] for h in steered}
    plain = hits_of(run("search", QUERY, *base, "-k", "10", "--modality", "mtf"))
    diverse = hits_of(run("search", QUERY, *base, "-k", "10", "--modality", "mtf", "--diverse"))
    assert len(diverse) == 10
    assert diverse[0]["id"] == plain[0]["id"]
    assert diverse != plain
    res = run("search", "--like", "not-an-id", *base)
    assert res.exit_code == 1
    assert "not a point id" in res.output
    res = run("search", "--like", "00000000-0000-0000-0000-000000000000", *base)
    assert res.exit_code == 1
    assert "no piece" in res.output
    res = run("search", "--like", first[0]["id"], "--diverse", *base)
    assert res.exit_code == 2


def test_usage_errors(store, parity_dir):
    path, _ = store
    assert (
        "give a QUERY text, --music FILE or --like ID"
        in run("search", "-c", "music", "--qdrant-path", path).output
    )
    assert (
        "give a QUERY text, --music FILE or --like ID"
        in run("search", " ", "-c", "music", "--qdrant-path", path).output
    )
    res = run(
        "search",
        "x",
        "--music",
        parity_dir / "inputs" / "midi" / "primitive_test01.mid",
        "-c",
        "music",
        "--qdrant-path",
        path,
    )
    assert res.exit_code == 2
    res = run("search", QUERY, "-c", "nothing", "--qdrant-path", path)
    assert res.exit_code == 1
    assert "no collection 'nothing'" in res.output
    res = run(
        "search",
        "--music",
        parity_dir / "inputs" / "txt" / "en_jig.txt",
        "-c",
        "music",
        "--qdrant-path",
        path,
    )
    assert res.exit_code == 1
    assert "not a music file" in res.output


def test_shell_loads_each_tower_once(store, parity_dir, loads):
    path, _ = store
    mid = parity_dir / "inputs" / "midi" / "primitive_test01.mid"
    script = (
        "\n".join(
            [
                QUERY,
                ":k 2",
                ":json",
                f":music {mid}",
                ":filter formats=mtf",
                QUERY,
                ":bogus",
                ":filter nonsense",
                ":modality abc",
                QUERY,
                ":quit",
                "never reached",
            ]
        )
        + "\n"
    )
    res = run("shell", "-c", "music", "--qdrant-path", path, input=script)
    assert res.exit_code == 0, res.output
    assert loads == [{"music": False, "text": True}, {"music": True, "text": False}]
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    # the MIDI query's 2 hits (same MTF: score 1), then 2 .mtf files; .mtf files have no abc vector
    assert len(lines) == 4
    assert all(h["payload"]["piece_id"].split("/")[-1].startswith("primitive_test01.") for h in lines[:2])
    assert all(h["score"] == pytest.approx(1.0, abs=1e-5) for h in lines[:2])
    assert all(h["source"].endswith(".mtf") for h in lines[2:4])
    assert "unknown command :bogus" in res.output
    assert "bad filter" in res.output
    assert "rank" in res.stdout  # the first search printed a table


def test_shell_in_a_terminal_survives_ctrl_c_and_confirms_settings(store):
    """A real terminal (pty): Ctrl-C at the prompt clears the line instead of quitting; :k and :json say
    what they set."""
    import os
    import pty
    import select
    import termios
    import time

    path, _ = store

    def read_until(fd: int, marker: bytes, seen: bytearray, limit: float = 120.0) -> bytes:
        deadline = time.monotonic() + limit
        while marker not in seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} in {bytes(seen)[-500:]!r}")
            if select.select([fd], [], [], 0.5)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:  # the child closed the terminal
                    break
        return bytes(seen)

    env = {**os.environ, "TERM": "dumb"}
    fd, tty = pty.openpty()  # the parent keeps the terminal's end too, to see its mode
    pid = os.fork()
    if pid == 0:  # the child: the shell on the pty, its controlling terminal
        import signal

        os.close(fd)
        os.login_tty(tty)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as in a terminal, even if this run ignores Ctrl-C
        os.execve(
            sys.executable,
            [sys.executable, "-m", "clamp2_engine", "shell", "-c", "music", "--qdrant-path", str(path)],
            env,
        )
    seen = bytearray()
    try:
        read_until(fd, b"search> ", seen)
        # Ctrl-C: SIGINT to the shell, as a person would, once readline has set the terminal up (it
        # discards what is typed before that): wait for that state (line editing off), then type
        deadline = time.monotonic() + 120
        while termios.tcgetattr(tty)[3] & termios.ICANON:
            assert time.monotonic() < deadline, "readline never took the terminal"
            time.sleep(0.01)
        # readline may take the terminal more than once while it starts (a keystroke in between is lost):
        # a person whose Ctrl-C did nothing presses it again, and so does the test (each is survived)
        for _attempt in range(10):
            os.write(fd, b"half a quer\x03")
            try:
                read_until(fd, b"(:quit or Ctrl-D to leave)", seen, limit=5.0)
                break
            except AssertionError:
                continue
        read_until(fd, b"(:quit or Ctrl-D to leave)", seen)
        os.write(fd, b":k 3\n")
        read_until(fd, b"k = 3 hits per query", seen)
        os.write(fd, b":json\n")
        read_until(fd, b"JSON output on", seen)
        os.write(fd, b":quit\n")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
        os.close(tty)
    assert os.waitstatus_to_exitcode(status) == 0, bytes(seen)[-800:]
    assert b"Traceback" not in seen
    assert b"Aborted" not in seen


def test_collections_commands(store, tmp_path):
    path, _ = store
    rows = json.loads(run("collections", "list", "--qdrant-path", path, "--json").stdout)
    assert [(r["name"], r["points"], r["model"], r["dim"]) for r in rows] == [
        ("music", 43, "clamp2.pth", 128)
    ]
    info = json.loads(run("collections", "info", "music", "--qdrant-path", path, "--json").stdout)
    assert info["vectors"] == {"abc": 22, "mtf": 21, "text": 0, "lexical": 43}
    assert info["distance"] == "cosine"
    assert info["model_source"]["model"].endswith("clamp2.pth")
    assert "music" in run("collections", "list", "--qdrant-path", path).stdout
    assert "clamp2.pth" in run("collections", "info", "music", "--qdrant-path", path).stdout
    assert info["engine"] == "edge"
    assert info["disk_bytes"] > 0
    assert "keys.composer" in info["payload_indexes"]
    res = run("collections", "info", "nope", "--qdrant-path", path)
    assert res.exit_code == 1
    assert "no collection" in res.output
    res = run("collections", "optimize", "music", "--qdrant-path", path)
    assert res.exit_code == 0
    assert "music:" in res.output
    # migrate to another store, then drop the copy there
    other = tmp_path / "other"
    res = run("migrate", "-c", "music", "--qdrant-path", path, "--to-path", other, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["points"] == 43
    assert json.loads(res.stdout)["verified"]
    # the same answers (by meaning: equal vectors tie, and each engine orders tied pieces its own way)
    q = ["search", QUERY, "-c", "music", "--json", "-k", "5", "--mode", "semantic", "--qdrant-path"]
    assert [h["id"] for h in hits_of(run(*q, other))] == [h["id"] for h in hits_of(run(*q, path))]
    assert run("collections", "drop", "music", "--qdrant-path", other, input="n\n").exit_code == 1
    assert run("collections", "drop", "music", "--qdrant-path", other, input="y\n").exit_code == 0
    assert run("collections", "drop", "music", "--qdrant-path", other, "--yes").exit_code == 1
    assert json.loads(run("collections", "list", "--qdrant-path", other, "--json").stdout) == []


HOLDER = textwrap.dedent(
    """
    import sys
    from clamp2_engine.store import StoreSpec, open_store
    store = open_store(StoreSpec(path=sys.argv[1]))
    store.collection("music")
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_store_in_use_by_another_process(store, loads):
    path, _ = store
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        for args in (
            ["search", QUERY, "-c", "music"],
            ["shell", "-c", "music"],
            ["collections", "info", "music"],
        ):
            res = run(*args, "--qdrant-path", path)
            assert res.exit_code == 1
            assert "in use by another process" in res.output
            assert "Traceback" not in res.output
        assert loads == []  # refused before any model was loaded
        res = run("collections", "list", "--qdrant-path", path)
        assert res.exit_code == 0
        assert "in use" in res.output
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_killed_holder_leaves_no_lock_behind(store):
    path, _ = store
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()  # SIGKILL: no clean-up runs
    proc.wait(timeout=30)
    res = run("collections", "list", "--json", "--qdrant-path", path)
    assert res.exit_code == 0
    assert "music" in res.stdout


def test_bad_qdrant_url_fails_fast(parity_dir, tmp_path, loads, monkeypatch):
    for args in (
        ["collections", "list"],
        ["search", QUERY, "-c", "music"],
        ["ingest", parity_dir / "inputs" / "mtf", "-c", "music", *model_args(parity_dir)],
    ):
        res = run(*args, "--qdrant-url", "http://127.0.0.1:1")
        assert res.exit_code == 1
        assert "cannot reach Qdrant server http://127.0.0.1:1" in res.output
        assert "Traceback" not in res.output
    monkeypatch.setenv("CLAMP2_QDRANT_URL", "not a url")
    res = run("collections", "list")
    assert res.exit_code == 1
    assert "not an http(s) URL" in res.output
    assert loads == []


def test_another_model_is_refused(store, parity_dir, tmp_path):
    import torch

    from clamp2_engine.checkpoints import load_checkpoint, save_checkpoint

    path, _ = store
    sd = load_checkpoint(parity_dir / "checkpoints" / "clamp2.pth")["model"]
    sd["text_proj.bias"] = sd["text_proj.bias"] + 1
    other = save_checkpoint(tmp_path / "other.pth", {k: torch.as_tensor(v) for k, v in sd.items()})
    res = run("search", QUERY, "-c", "music", "--qdrant-path", path, "--model", other)
    assert res.exit_code == 1
    assert "holds vectors of clamp2.pth" in res.output
    res = run(
        "ingest",
        parity_dir / "inputs" / "mtf",
        "-c",
        "music",
        "--qdrant-path",
        path,
        "--model",
        other,
        "--text-model",
        parity_dir / "text_model",
    )
    assert res.exit_code == 1
    assert "holds vectors of clamp2.pth" in res.output
    assert "--model" in res.output


def test_a_music_only_collection_remembers_the_text_model(store):
    """No --model / --text-model at search time: the collection's record says where they are."""
    path, _ = store
    info = json.loads(run("collections", "info", "music", "--qdrant-path", path, "--json").stdout)
    assert Path(info["model_source"]["text_model"]).name == "text_model"


def test_the_schema_doc_example_runs(store, capsys):
    """docs/schema.md's example for other services, against the fixture collection."""
    import re

    path, _ = store
    doc = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    code = code.replace('QdrantClient(url="http://localhost:6333", api_key=None)', "SERVER")
    code = code.replace('text="chopin"', 'text="corelli"')
    with open_store(StoreSpec(path=path)) as src, open_store(StoreSpec(url=MEMORY)) as server:
        src.collection("music").copy_to(server)  # the server path: qdrant-client's in-memory stand-in
        namespace = {"SERVER": server.backend.client}
        exec(compile(code, "schema.md", "exec"), namespace)
        fused = namespace["fused"]
    printed = capsys.readouterr().out.splitlines()
    assert printed
    assert all("Sonata da Chiesa" in line for line in printed)
    assert len(fused) == 10


def test_an_empty_corpus_is_an_error_not_a_wipe(store, tmp_path, parity_dir):
    path, _ = store
    empty = tmp_path / "inputs"  # the same corpus name as the ingested one
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("no music here")
    res = run("ingest", empty, "-c", "music", "--qdrant-path", path, *model_args(parity_dir))
    assert res.exit_code == 1
    assert "no music found" in res.output
    rows = json.loads(run("collections", "list", "--qdrant-path", path, "--json").stdout)
    assert rows[0]["points"] == 43


def test_migrate_an_old_local_mode_folder(store, tmp_path):
    """A store written before Qdrant Edge (qdrant-client local mode): refused with a hint, then migrated."""
    path, _ = store
    with open_store(StoreSpec(path=path)) as src:
        points = [p for page in src.collection("music").scroll(vectors=True) for p in page]
        record = src.collection("music").record
    from qdrant_client import QdrantClient, models

    old = tmp_path / "old"
    client = QdrantClient(path=str(old))
    params = models.VectorParams(size=record.dim, distance=models.Distance.COSINE)
    meta = {**record.as_dict(), "schema": 1}
    client.create_collection(
        "music", vectors_config={v: params for v in ("abc", "mtf", "text")}, metadata={"clamp2_engine": meta}
    )
    old_points = [
        models.PointStruct(
            id=p.id, vector=p.vector_lists(), payload={k: v for k, v in p.payload.items() if k != "keys"}
        )
        for p in points
    ]
    client.upsert("music", old_points)
    client.close()
    res = run("collections", "list", "--qdrant-path", old)
    assert res.exit_code == 1
    assert "--from-local-mode" in res.output
    new = tmp_path / "new"
    res = run("migrate", "-c", "music", "--from-local-mode", old, "--to-path", new, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["points"] == 43
    q = ["search", QUERY, "-c", "music", "--json", "-k", "5", "--filter", "formats=MID", "--mode", "semantic"]
    q.append("--qdrant-path")
    got, want = hits_of(run(*q, new)), hits_of(run(*q, path))
    assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want], abs=1e-5)
    clear = [h["id"] for h in want if h["score"] > want[-1]["score"] + 1e-4]  # ties may come in either order
    assert [h["id"] for h in got][: len(clear)] == clear


def test_a_cached_onnx_export_serves_search_without_torch(store, parity_dir, tmp_path):
    """`export onnx` without --out fills the model cache; search then runs on ONNX Runtime (no torch, no
    transformers imported) with the same hits and scores as PyTorch; `collections info` says which runs."""
    import os

    from clamp2_engine.cli.collections import _query_model_line

    path, _ = store
    args = ["search", QUERY, "-c", "music", "--qdrant-path", path, "--json", "-k", "5", "--mode", "semantic"]
    info = ["collections", "info", "music", "--qdrant-path", path]
    before = json.loads(run(*info, "--json").stdout)
    assert before["query_model"]["runtime"] == "torch"
    assert run(*info).exit_code == 0
    hint = _query_model_line(before["query_model"], before["model"], {"model": "mine.pth"})
    assert "`clamp2-engine export onnx --model mine.pth` makes them faster" in hint
    torch_hits = hits_of(run(*args, "--backend", "torch"))
    res = run("export", "onnx", *model_args(parity_dir), "--json")
    assert res.exit_code == 0, res.output
    planned = json.loads(run(*info, "--json").stdout)["query_model"]
    assert planned == {"runtime": "onnx", "precision": "fp32", "source": "cached export"}
    cache = Path(json.loads(res.stdout)["out"])
    assert cache.parent.name == "onnx"
    assert (cache / "manifest.json").is_file()
    probe = textwrap.dedent(
        """
        import json, sys
        from click.testing import CliRunner
        from clamp2_engine.cli import main
        res = CliRunner().invoke(main, sys.argv[1:], catch_exceptions=False)
        print(json.dumps({"out": res.stdout, "code": res.exit_code,
                          "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *map(str, args)], capture_output=True, text=True, env=dict(os.environ)
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, proc.stderr[-2000:]
    assert not report["torch"]
    assert not report["transformers"]
    onnx_hits = [json.loads(line) for line in report["out"].splitlines() if line.strip()]
    assert [h["id"] for h in onnx_hits] == [h["id"] for h in torch_hits]
    for got, want in zip(onnx_hits, torch_hits, strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
