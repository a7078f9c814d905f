"""A service's view: with only qdrant-client and fastembed (a virtual environment of its own), an export's
fastembed folder gives the engine's query vectors and `--mode semantic` ranking (examples/qdrant_service.py,
the README's "Use it from other tools")."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import ingest_serve_corpus, readme_example

from clamp2_engine.search import Query, SearchSession
from clamp2_engine.store import StoreSpec, open_store

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a chorale for four voices", "Ein Choral von Bach\nin G-Dur\n\nvierstimmig", "茉莉花"]


@pytest.fixture(scope="module")
def exported(parity_dir, tmp_path_factory):
    from clamp2_engine.exporters.onnx import export_onnx

    out = tmp_path_factory.mktemp("service") / "clamp2-onnx"
    export_onnx(parity_dir / "checkpoints" / "clamp2.pth", out, parity_dir / "text_model", verify=False)
    return out


def test_the_export_is_a_fastembed_folder(exported):
    spec = json.loads((exported / "fastembed.json").read_text())
    assert spec == {
        "model": "clamp2-text",
        "pooling": "DISABLED",
        "normalization": True,
        "dim": spec["dim"],
        "model_file": "text.onnx",
        "additional_files": spec["additional_files"],
        "output_name": "pooled",
        "folder": ".",
    }
    for name in [spec["model_file"], *spec["additional_files"]]:
        assert (exported / spec["folder"] / name).is_file(), name
    config = json.loads((exported / "tokenizer_config.json").read_text())
    assert (
        config["model_max_length"]
        == json.loads((exported / "manifest.json").read_text())["identity"]["max_text_length"]
    )


@pytest.fixture(scope="module")
def served(parity_dir, tmp_path_factory) -> Path:
    """The parity pieces ingested into collection ``music`` (an embedded store)."""
    return ingest_serve_corpus(tmp_path_factory.mktemp("served"), parity_dir)


QUERY_ONLY = """
import sys
from clamp2_engine import LoadOptions, load
from clamp2_engine.search.ranking import nearest
from clamp2_engine.store import StoreSpec, open_store

model = load(LoadOptions(backend="onnx", onnx_dir=sys.argv[1], towers=("text",)))
with open_store(StoreSpec(path=sys.argv[2])) as store:
    hits = nearest(store.collection("music"), model.encode_text("a chorale"), limit=3)[0]
print(len(hits))
"""


def test_a_text_query_from_an_export_imports_no_torch(exported, served):
    """Encoding a text query with an export and searching: `python -X importtime` lists every module
    imported, and neither torch nor transformers is among them."""
    import sys

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", QUERY_ONLY, str(exported), str(served)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "3"
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert {"onnxruntime", "tokenizers", "qdrant_edge", "clamp2_engine"} <= imported
    assert imported & {"torch", "transformers"} == set()


@pytest.mark.slow
def test_a_service_with_qdrant_client_and_fastembed_alone(
    service_python, exported, served, tmp_path, text_model, parity_dir
):
    store = served
    with open_store(StoreSpec(path=store)) as opened:
        coll = opened.collection("music")
        points = [
            {
                "id": p.id,
                "vector": {
                    k: list(map(float, v)) for k, v in p.vectors.items() if k in ("abc", "mtf", "text")
                },
                "payload": {"title": p.payload.get("title")},
            }
            for page in coll.scroll(vectors=True)
            for p in page
        ]
        session = SearchSession(coll, {"model": str(parity_dir / "checkpoints" / "clamp2.pth")})
        session.models.loaded["text"] = text_model
        found = [session.find(Query(text=t, mode="semantic", k=10)).hits for t in TEXTS]
    dump = tmp_path / "points.json"
    dump.write_text(json.dumps(points))
    script = ROOT / "examples" / "qdrant_service.py"
    cmd = [
        service_python,
        str(script),
        "--export",
        str(exported),
        "--points",
        str(dump),
        "-c",
        "music",
        "--vectors",
    ]
    done = subprocess.run([*cmd, *TEXTS], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["imported"] == []  # neither clamp2_engine nor torch nor transformers
    for text, vector in zip(TEXTS, out["vectors"], strict=True):
        want = text_model.encode_text(text)
        cos = float(np.dot(want, vector) / np.linalg.norm(want) / np.linalg.norm(vector))
        assert cos >= 0.99999, (text, cos)
    for mine, theirs in zip(found, out["hits"], strict=True):  # the same ranking, up to exact ties
        assert [h["score"] for h in theirs] == pytest.approx([h.score for h in mine], abs=1e-5)
        assert {h["id"]: h["score"] for h in theirs} == pytest.approx({h.id: h.score for h in mine}, abs=1e-5)


def collection_points(store: Path) -> list[dict]:
    """Collection ``music``'s points (dense vectors, title and metadata) as JSON-ready dicts."""
    with open_store(StoreSpec(path=store)) as opened:
        return [
            {
                "id": p.id,
                "vector": {
                    k: list(map(float, v)) for k, v in p.vectors.items() if k in ("abc", "mtf", "text")
                },
                "payload": {k: p.payload.get(k) for k in ("title", "source", "metadata")},
            }
            for page in opened.collection("music").scroll(vectors=True)
            for p in page
        ]


@pytest.mark.slow
def test_the_readme_service_example_runs_as_written(service_python, exported, served, tmp_path):
    dump = tmp_path / "points.json"
    dump.write_text(json.dumps(collection_points(served)))
    code = readme_example("service")
    for old, new in (
        ('export = "clamp2-onnx"', f"export = {str(exported)!r}"),
        (
            'QdrantClient(url="http://localhost:6333")',
            f'__import__("qdrant_service").load_copy({str(dump)!r}, "music")',
        ),
    ):
        assert old in code
        code = code.replace(old, new)
    env = {"PYTHONPATH": str(ROOT / "examples"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [service_python, "-c", code], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import ast

    printed = ast.literal_eval(done.stdout.strip())
    assert len(printed) == 10
    assert all(isinstance(score, float) for _title, score in printed)


def test_the_readme_langchain_example_runs_as_written(served, parity_dir, tmp_path):
    from qdrant_client import QdrantClient, models

    points = collection_points(served)
    client = QdrantClient(":memory:")
    dims = {k: len(v) for p in points for k, v in p["vector"].items()}
    client.create_collection(
        "music",
        vectors_config={
            k: models.VectorParams(size=d, distance=models.Distance.COSINE) for k, d in dims.items()
        },
    )
    client.upsert("music", [models.PointStruct(**p) for p in points])
    code = readme_example("langchain")
    model = f"CLaMP2Embeddings({str(parity_dir / 'checkpoints' / 'clamp2.pth')!r}, text_model={str(parity_dir / 'text_model')!r})"
    for old, new in (
        ('QdrantClient(url="http://localhost:6333")', "CLIENT"),
        ('CLaMP2Embeddings("clamp2")', model),
    ):
        assert old in code
        code = code.replace(old, new)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (langchain)", "exec"), {"CLIENT": client})
    assert len(out.getvalue().splitlines()) == 5
