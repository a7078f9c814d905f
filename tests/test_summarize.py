"""Summaries from an OpenAI-compatible server: a real scripted HTTP server on 127.0.0.1, the official
``openai`` client talking to it over the network, every item accounted for exactly once."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from llm_server import ScriptedLLM, valid_answer

from clamp2_engine.cli import main
from clamp2_engine.ingest.llm_prompt import LANGUAGES, build_messages, parse_answer, resolve_languages
from clamp2_engine.ingest.summarize import (
    SummarizeError,
    errors_path_for,
    item_identity,
    load_items,
    output_record,
    pick_language,
    summarize_items,
)
from clamp2_engine.ingest.summarize_run import backoff_delay, retry_after_seconds
from clamp2_engine.ingest.summary_store import JsonlAppender, OutputLockedError, read_output

SECRET = "sk-test-0123456789abcdef-SECRET"

# key -> (script, where it must end: "out" | "errors", requests expected with max_retries=5, answer_retries=1)
SCENARIO = {
    "valid": (["valid"], "out", 1),
    "fenced": (["fenced"], "out", 1),
    "none": (["none"], "errors", 1),
    "wrong-language": (["wrong_language"], "errors", 2),
    "wrong-then-right": (["wrong_language", "valid"], "out", 2),
    "invalid-json": (["invalid_json"], "errors", 2),
    "bad-shape-then-valid": (["bad_shape", "valid"], "out", 2),
    "rate-limited": ([{"status": 429, "retry_after": 1}, "valid"], "out", 2),
    "server-error-then-ok": ([{"status": 500}, "valid"], "out", 2),
    "server-error-always": ([{"status": 503}], "errors", 6),
    "slow-then-ok": ([{"sleep": 1.0}, "valid"], "out", 2),
    "dropped-then-ok": (["drop", "valid"], "out", 2),
    "bad-request": ([{"status": 400}], "errors", 1),
    "unprocessable": ([{"status": 422}], "errors", 1),
    "echo-key": (["echo_auth"], "errors", 1),
}


def _items(keys) -> list[dict]:
    return [
        {
            "title": k,
            "composer": "Somebody",
            "genres": ["Folk"],
            "lyrics": None,
            "filepaths": [f"abc/{k}.abc"],
        }
        for k in keys
    ]


def _run(llm: ScriptedLLM, items, out: Path, **kw):
    opts = dict(
        base_url=llm.base_url,
        model="test-model",
        timeout=0.3,
        backoff_base=0.01,
        backoff_max=0.05,
        progress=False,
    )
    return summarize_items(items, out, **{**opts, **kw})


def _titles(path: Path) -> list[str]:
    return [r["title"] for r in read_output(path)[0]] if path.exists() else []


# -- prompt and answers ---------------------------------------------------------------------------
VALID = json.dumps(valid_answer("x", "French"))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (VALID, "ok"),
        (f"```json\n{VALID}\n```", "ok"),
        (f"```\n{VALID}```", "ok"),
        (f"Sure, here it is: {VALID} Hope this helps.", "ok"),
        (VALID.replace('"language": "French"', '"language": " french "'), "ok"),
        ("None", "none"),
        ("`None`", "none"),
        ("None.", "none"),
        ("```\nNone\n```", "none"),
        ("null", "none"),
        (VALID.replace("French", "German"), "wrong_language"),
        ('{"summary_en": "x", "summary_nen": {', "invalid_json"),
        ("I cannot help with that.", "invalid_json"),
        ("", "invalid_json"),
        (None, "invalid_json"),
        ('{"summary_en": "x"}', "bad_shape"),
        ('{"summary_en": "", "summary_nen": {"language": "French", "summary": "y"}}', "bad_shape"),
        ("[1, 2]", "bad_shape"),
    ],
)
def test_parse_answer(text, kind):
    ans = parse_answer(text, "French")
    assert ans.kind == kind, ans.reason
    if kind == "ok":
        assert ans.summaries == {
            "summary_en": "Summary of x.",
            "summary_nen": {"language": "French", "summary": "(French) x"},
        }


def test_languages_are_the_reference_100(parity_dir):
    assert len(LANGUAGES) == len(set(LANGUAGES)) == 100
    ref = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text(encoding="utf-8")
    listed = " ".join(ref.split("- Languages:")[1].split("## 7")[0].split()).rstrip(".")
    assert tuple(x.strip() for x in listed.split(",")) == LANGUAGES


def test_resolve_languages():
    assert resolve_languages(None) == LANGUAGES
    assert resolve_languages("french, JAPANESE,French") == ("French", "Japanese")
    assert resolve_languages(["Chinese (Simplified)"]) == ("Chinese (Simplified)",)
    with pytest.raises(ValueError, match="did you mean French"):
        resolve_languages("Frensh")


def test_prompt_follows_the_reference():
    msgs = build_messages({"title": "T", "composer": None, "genres": ["Jazz"]}, "Korean")
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert '"summary_nen"' in msgs[0]["content"]
    assert "None" in msgs[0]["content"]
    assert json.loads(msgs[1]["content"])["nen_language"] == "Japanese"
    assert parse_answer(msgs[2]["content"], "Japanese").ok
    assert msgs[4]["content"] == "None"
    assert json.loads(msgs[-1]["content"]) == {"title": "T", "genres": ["Jazz"], "nen_language": "Korean"}


# -- identity, languages, loading -----------------------------------------------------------------
@pytest.mark.parametrize(
    "item",
    [
        {"title": "A", "filepaths": ["abc/a.abc", "mtf/a.mtf"]},
        {"title": "A", "composer": None, "nen_language": "Thai", "summary_en": "old"},
        {"title": "Ä", "tags": ["x", 1, 2.5], "filepaths": "abc/a.abc"},
    ],
)
def test_identity_survives_the_output_record(item):
    rec = json.loads(json.dumps(output_record(item, valid_answer("A", "Thai")), ensure_ascii=False))
    assert item_identity(rec) == item_identity(item)
    assert list(rec)[-1] == "filepaths" or "filepaths" not in item
    assert "nen_language" not in rec
    assert None not in rec.values()


def test_language_is_a_function_of_seed_and_item():
    ids = [item_identity(it) for it in _items(range(400))]
    first = [pick_language(i, 0) for i in ids]
    assert first == [pick_language(i, 0) for i in ids]
    assert first != [pick_language(i, 1) for i in ids]
    assert len(set(first)) > 90  # spread over the 100 languages
    assert {pick_language(i, 0, ("French", "Japanese")) for i in ids} == {"French", "Japanese"}


def test_load_items_folder_and_jsonl(tmp_path):
    src = tmp_path / "meta"
    (src / "sub").mkdir(parents=True)
    (src / "a.json").write_text(json.dumps({"title": "A", "filepaths": ["abc/a.abc"]}), encoding="utf-8")
    (src / "sub" / "b.json").write_text(json.dumps({"title": "B"}), encoding="utf-8")
    (src / "sub" / "broken.json").write_text("{not json", encoding="utf-8")
    (src / "list.json").write_text("[1]", encoding="utf-8")
    (src / "notes.txt").write_text("ignored", encoding="utf-8")
    items = load_items(src)
    assert [it["__source__"] for it in items] == ["a.json", "list.json", "sub/b.json", "sub/broken.json"]
    assert [("__error__" in it) for it in items] == [False, True, False, True]
    jl = tmp_path / "items.jsonl"
    jl.write_text('{"title": "A"}\n\n"str"\n{"title": "B"}\n', encoding="utf-8")
    assert [(it["__source__"], it.get("title")) for it in load_items(jl)] == [
        ("items.jsonl:1", "A"),
        ("items.jsonl:3", None),
        ("items.jsonl:4", "B"),
    ]


def test_read_jsonl_repairs_torn_and_bad_lines(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3, "b": "tor')
    assert read_output(p) == ([{"a": 1}, {"a": 2}], 1)
    assert p.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
    p.write_bytes(b'{"a": 1}\ngarbage\n{"a": 2}')  # bad middle line; last line complete, no newline
    assert read_output(p) == ([{"a": 1}, {"a": 2}], 1)
    assert p.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
    with JsonlAppender(p):
        with pytest.raises(OutputLockedError):
            JsonlAppender(p)


def test_retry_after_and_backoff():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
    for attempt, hi in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0)]:
        assert all(hi / 2 <= backoff_delay(attempt, 1.0, 60.0) <= hi for _ in range(50))


# -- against the scripted server ------------------------------------------------------------------
def test_every_item_accounted_once_with_the_right_retries(tmp_path, monkeypatch, capsys, llm_server):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    items = _items(SCENARIO) + [{"title": None, "description": " ", "filepaths": ["abc/empty.abc"]}]
    out = tmp_path / "items.jsonl"
    llm = llm_server({k: v[0] for k, v in SCENARIO.items()})
    report = _run(llm, items, out)
    attempts = {k: llm.attempts(k) for k in SCENARIO}
    log = list(llm.log)
    errors, _ = read_output(errors_path_for(out))
    assert errors_path_for(out).name == "items.errors.jsonl"
    in_out, in_err = _titles(out), [e["source"].split("/")[-1][:-4] for e in errors]
    assert sorted(in_out + in_err) == sorted([*SCENARIO, "empty"])  # each exactly once
    assert sorted(in_out) == sorted(k for k, v in SCENARIO.items() if v[1] == "out")
    assert attempts == {k: v[2] for k, v in SCENARIO.items()}  # retried where, and only where, it should
    assert "empty" not in {e["key"] for e in log}  # no request for an item without metadata
    kinds = {e["source"]: e["kind"] for e in errors}
    assert kinds["abc/none.abc"] == "none"
    assert kinds["abc/empty.abc"] == "empty"
    assert kinds["abc/server-error-always.abc"] == "http_503"
    assert kinds["abc/bad-request.abc"] == "http_400"
    assert kinds["abc/wrong-language.abc"] == "wrong_language"
    assert kinds["abc/invalid-json.abc"] == "invalid_json"
    assert all(e["reason"] and e["identity"] and e["language"] in LANGUAGES for e in errors)
    assert "excerpt" in next(e for e in errors if e["kind"] == "invalid_json")
    assert (report.done, report.failed, report.none, report.skipped) == (len(in_out), len(errors) - 2, 2, 0)
    assert report.retries == sum(attempts.values()) - len(SCENARIO)
    assert report.tokens == 120 * sum(
        1
        for e in log
        if e["step"] in ("valid", "fenced", "none", "wrong_language", "invalid_json", "bad_shape")
    )
    # Retry-After honoured (a lower bound: the retry never comes early)
    t429 = [e["time"] for e in log if e["key"] == "rate-limited"]
    assert t429[1] - t429[0] >= 1.0
    # the key is sent, never printed nor written
    assert {e["authorization"] for e in log} == {f"Bearer {SECRET}"}
    captured = capsys.readouterr()
    for text in (out.read_text(), errors_path_for(out).read_text(), captured.out, captured.err):
        assert SECRET not in text
    assert "***" in next(e for e in errors if e["source"] == "abc/echo-key.abc")["reason"]
    # the seed format: input fields (nulls dropped), summary_en, summary_nen, filepaths last
    rec = next(r for r in read_output(out)[0] if r["title"] == "fenced")
    assert list(rec) == ["title", "composer", "genres", "summary_en", "summary_nen", "filepaths"]
    assert rec["summary_nen"]["language"] == pick_language(item_identity(rec), 0)


def test_rerun_skips_done_and_final_items_and_retries_the_rest(tmp_path, llm_server):
    keys = ["a", "b", "none", "flaky"]
    out = tmp_path / "out.jsonl"
    llm = llm_server({"none": ["none"], "flaky": [{"status": 500}, {"status": 500}, "valid"]})
    first = _run(llm, _items(keys), out, max_retries=1)
    assert (first.done, first.none, first.failed) == (2, 1, 1)
    second = _run(llm, _items(keys), out, max_retries=1)  # "flaky" asked again, now succeeds
    assert (second.done, second.skipped) == (1, 3)
    assert llm.attempts("flaky") == 3
    assert llm.attempts("none") == 1
    assert llm.attempts("a") == 1
    third = _run(llm, _items(keys), out)
    assert (third.done, third.skipped, llm.requests()) == (0, 4, 6)
    fourth = _run(llm, _items(keys), out, retry_none=True)
    assert (fourth.none, fourth.skipped, llm.attempts("none")) == (1, 3, 2)
    edited = _items(keys)
    edited[2]["description"] = "Now with a description."  # same filepaths, new metadata: asked again
    fifth = _run(llm, edited, out)
    assert (fifth.none, fifth.skipped, llm.attempts("none")) == (1, 3, 3)
    assert sorted(_titles(out)) == ["a", "b", "flaky"]
    errors, _ = read_output(errors_path_for(out))
    assert [(e["source"], e["kind"]) for e in errors] == [("abc/none.abc", "none")]  # stale failure gone


def test_torn_last_line_is_dropped_and_redone(tmp_path, llm_server):
    out = tmp_path / "out.jsonl"
    llm = llm_server()
    _run(llm, _items("abc"), out)
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:2]) + lines[2][:25])  # a SIGKILL in the middle of a write
    report = _run(llm, _items("abc"), out)
    assert (report.done, report.skipped) == (1, 2)
    assert sorted(_titles(out)) == ["a", "b", "c"]


def test_concurrency_is_bounded(tmp_path, llm_server):
    llm = llm_server(latency=0.05)
    report = _run(llm, _items(range(24)), tmp_path / "out.jsonl", concurrency=3)
    assert report.done == 24
    assert 1 <= llm.max_in_flight <= 3


@pytest.mark.parametrize(("status", "match"), [(401, "API key was refused"), (404, "check the API root")])
def test_auth_and_routing_errors_stop_the_run(tmp_path, status, match, llm_server):
    llm = llm_server(default={"status": status})
    with pytest.raises(SummarizeError, match=match):
        _run(llm, _items("ab"), tmp_path / "out.jsonl")


def test_unreachable_server_stops_the_run(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out.jsonl"
    with pytest.raises(SummarizeError, match="in a row failed"):
        summarize_items(
            _items(range(30)),
            out,
            base_url=f"http://127.0.0.1:{port}/v1",
            model="m",
            max_retries=0,
            concurrency=2,
            progress=False,
        )
    errors, _ = read_output(errors_path_for(out))
    assert 8 <= len(errors) < 30
    assert {e["kind"] for e in errors} == {"connection"}


def test_called_from_a_running_event_loop(tmp_path, llm_server):
    async def caller():
        llm = llm_server()
        return _run(llm, _items("xy"), tmp_path / "out.jsonl")

    assert asyncio.run(caller()).done == 2


# -- the command line -----------------------------------------------------------------------------
def test_cli_summarize_folder(tmp_path, monkeypatch, llm_server):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    src = tmp_path / "meta"
    src.mkdir()
    for it in _items(["a", "b", "none"]):
        (src / f"{it['title']}.json").write_text(json.dumps(it), encoding="utf-8")
    (src / "broken.json").write_text("{", encoding="utf-8")
    out = tmp_path / "out" / "items.jsonl"
    llm = llm_server({"none": ["none"]})
    args = [
        "summarize",
        str(src),
        str(out),
        "--base-url",
        llm.base_url,
        "--llm",
        "m",
        "--languages",
        "French,Japanese",
        "--concurrency",
        "2",
        "--json",
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output  # an item failed: the batch commands' exit status
    counts = json.loads(res.output)
    assert {k: counts[k] for k in ("total", "done", "none", "failed")} == {
        "total": 4,
        "done": 2,
        "none": 1,
        "failed": 1,
    }
    assert {e["authorization"] for e in llm.log} == {"Bearer sk-no-key"}
    again = json.loads(CliRunner().invoke(main, args).output)
    assert (again["skipped"], again["done"], llm.requests()) == (
        3,
        0,
        3,
    )  # the broken file is reported again
    assert {r["summary_nen"]["language"] for r in read_output(out)[0]} <= {"French", "Japanese"}
    errors, _ = read_output(errors_path_for(out))
    assert sorted(e["source"] for e in errors) == ["broken.json", "none.json"]
    res = CliRunner().invoke(main, [*args[:7], "--languages", "Klingon"])
    assert res.exit_code != 0
    assert "unknown language" in res.output


def test_cli_reports_fatal_errors(tmp_path, llm_server):
    src = tmp_path / "items.jsonl"
    src.write_text(json.dumps({"title": "a"}) + "\n", encoding="utf-8")
    llm = llm_server(default={"status": 401})
    res = CliRunner().invoke(
        main,
        [
            "summarize",
            str(src),
            str(tmp_path / "o.jsonl"),
            "--base-url",
            llm.base_url,
            "--llm",
            "m",
            "-q",
        ],
    )
    assert res.exit_code == 1
    assert "API key was refused" in res.output
    assert "re-run to resume" in res.output
