"""`ingest --summarize`: LLM summaries (a scripted local server) become the pieces' `text` vectors."""

from __future__ import annotations

import json

from click.testing import CliRunner
from index_helpers import build_seed, cos, model_args

from clamp2_engine.cli import main
from clamp2_engine.ingest.items import item_point_id
from clamp2_engine.store import open_store

NAMES = ["bach_bwv253", "bach_bwv335", "bach_bwv387", "bach_bwv11_6"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_ingest_summarize(tmp_path, parity_dir, bench_dir, monkeypatch, text_model, llm_server):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    seed = tmp_path / "seed"
    items = build_seed(seed, bench_dir, NAMES)
    for item in items[1:]:  # the first item keeps its summary and is not sent
        item.pop("summary_en")
        item.pop("summary_nen")
    (seed / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    llm = llm_server()
    args = [
        "ingest",
        seed,
        "-c",
        "s",
        "--summarize",
        "--base-url",
        llm.base_url,
        "--llm",
        "fake",
        "--json",
        *model_args(parity_dir),
    ]
    res = run(*args)
    assert res.exit_code == 0, res.output
    assert llm.requests() == 3
    assert llm.attempts(items[0]["title"]) == 0
    report = json.loads(res.stdout)
    assert report["vectors"]["text"] == 4
    assert report["points"] == 4
    again = json.loads(run(*args).stdout)  # summaries are kept: nothing is asked or embedded again
    assert llm.requests() == 3
    assert again["skipped"] == 4
    model = text_model
    with open_store() as store:
        coll = store.collection("s")
        for item in items:
            [p] = coll.retrieve([item_point_id(item, root=seed)], vectors=True)
            summary = item.get("summary_en") or f"Summary of {item['title']}."
            assert p.payload["summary_en"] == summary
            assert p.payload["summary_nen"]["summary"]
            assert cos(p.vectors["text"], model.encode_text(summary)) > 0.99999


def test_summarize_needs_metadata_and_a_server(tmp_path, parity_dir, bench_dir, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    (tmp_path / "plain").mkdir()
    res = run(
        "ingest",
        tmp_path / "plain",
        "-c",
        "x",
        "--summarize",
        "--base-url",
        "http://127.0.0.1:1/v1",
        "--llm",
        "m",
        *model_args(parity_dir),
    )
    assert res.exit_code == 2
    assert "--summarize needs metadata" in res.output
    build_seed(tmp_path / "seed", bench_dir, NAMES[:1])
    res = run("ingest", tmp_path / "seed", "-c", "x", "--summarize", *model_args(parity_dir))
    assert res.exit_code == 2
    assert "--base-url" in res.output
