"""Optional extras: the base install searches; a command needing a missing extra says which, in one line."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner
from index_helpers import model_args

from clamp2_engine.cli import main
from clamp2_engine.errors import EXTRAS

OPTIONAL = tuple(EXTRAS)
# modules that import an optional dependency at import time: dropped so that they import again
IMPORTERS = (
    "clamp2_engine.ingest",
    "clamp2_engine.exporters",
    "clamp2_engine.plots",
    "clamp2_engine.runtime.onnx_runtime",
)


@pytest.fixture()
def without(monkeypatch):
    """``without("music21", ...)``: those modules cannot be imported for this test (as if not installed).
    Modules first imported during the test are dropped after it, so that none keeps a reference to a
    module object the restored ``sys.modules`` no longer holds."""
    before = set(sys.modules)

    def block(*modules: str) -> None:
        for name in list(sys.modules):
            if name.startswith(IMPORTERS) or name.startswith(tuple(f"{m}." for m in modules)):
                monkeypatch.delitem(sys.modules, name)
        for module in modules:
            monkeypatch.setitem(sys.modules, module, None)

    yield block
    monkeypatch.undo()
    for name in set(sys.modules) - before:
        if name.startswith(IMPORTERS):
            del sys.modules[name]


def test_base_install_searches(parity_dir, bench_dir, tmp_path, monkeypatch, without):
    """With every optional dependency missing, ingest of ready ABC/MTF and search by text still work."""
    monkeypatch.setenv("CLAMP2_HOME", str(tmp_path / "home"))
    corpus = tmp_path / "corpus"  # the seed layout: ABC and MTF ready as model input, no conversion
    lines = []
    for sub in ("abc", "mtf"):
        (corpus / sub).mkdir(parents=True)
        path = sorted((bench_dir / sub).glob(f"*.{sub}"))[0]
        (corpus / sub / path.name).write_bytes(path.read_bytes())
        lines.append(json.dumps({"summary_en": f"a {sub} piece", "filepaths": [f"{sub}/{path.name}"]}))
    (corpus / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    without(*OPTIONAL)
    run = CliRunner().invoke
    res = run(main, ["ingest", str(corpus), "-c", "base", "--json", "-q", *model_args(parity_dir)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["points"] == 2
    res = run(main, ["search", "a chorale", "-c", "base", "--json"])
    assert res.exit_code == 0, res.output
    assert len(res.stdout.splitlines()) == 2
    assert not any(sys.modules.get(m) for m in OPTIONAL)


@pytest.mark.parametrize(
    ("missing", "extra", "command"),
    [
        ("abctoolkit", "convert", ["convert", "{abc}", "{out}", "--to", "xml"]),
        ("music21", "convert", ["convert", "{abc}", "{out}", "--to", "mtf", "--jobs", "0"]),
        ("mido", "convert", ["ingest", "{midi}", "-c", "m", *["{model}"]]),
        (
            "openai",
            "summarize",
            ["summarize", "{items}", "{out}/o.jsonl", "--base-url", "http://127.0.0.1:9", "--llm", "m"],
        ),
        ("onnx", "onnx", ["export", "onnx", "{model}", "--out", "{out}"]),
        ("matplotlib", "plot", ["eval", "{feats}", "{feats}", "--plot", "{out}/r.png"]),
    ],
)
def test_a_missing_extra_is_one_line_naming_the_install(
    missing, extra, command, parity_dir, tmp_path, monkeypatch, without
):
    monkeypatch.setenv("CLAMP2_HOME", str(tmp_path / "home"))
    midi = tmp_path / "midi"
    midi.mkdir()
    (midi / "a.mid").write_bytes((parity_dir / "inputs" / "midi" / "primitive_test01.mid").read_bytes())
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"title": "x", "filepaths": ["a.abc"]}) + "\n", encoding="utf-8")
    places = {
        "abc": str(parity_dir / "inputs" / "abc"),
        "midi": str(midi),
        "items": str(items),
        "out": str(tmp_path / "out"),
        "feats": str(parity_dir / "metrics" / "query"),
    }
    args = []
    for part in command:
        if part == "{model}":
            args += model_args(parity_dir)
        else:
            args.append(part.format(**places))
    without(missing)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert (
        lines[-1]
        == f"Error: this needs {missing}, from the optional extra '{extra}': pip install 'clamp2-engine[{extra}]'"
    )
    assert "Traceback" not in res.output
