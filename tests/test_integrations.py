"""The tools people already use: the `llm` plugin (through llm's own command line) and the LangChain
`Embeddings` (with LangChain's `QdrantVectorStore` over a copy of a collection), each against the engine's
own vectors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from clamp2_engine.cli import main

TEXT = "ein Choral von Bach"
BIN = Path(sys.executable).parent


def cos(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture
def llm_env(tmp_path):
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path / "llm"), "CLAMP2_HOME": os.environ["CLAMP2_HOME"]}
    return env


def llm_cli(env, *args: str) -> str:
    done = subprocess.run([str(BIN / "llm"), *args], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_llm_embed_equals_the_engines_pooled_vector(llm_env, tmp_path):
    vector = json.loads(llm_cli(llm_env, "embed", "-m", "clamp2-demo", "-c", TEXT))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "q.txt").write_text(TEXT, encoding="utf-8")
    res = CliRunner().invoke(
        main, ["embed", str(tmp_path / "in"), str(tmp_path / "out"), "--model", "demo", "--pooled", "-q"]
    )
    assert res.exit_code == 0, res.output
    want = np.load(tmp_path / "out" / "q.npy")[0]
    assert cos(vector, want) >= 0.99999
    assert "clamp2-demo" in llm_cli(llm_env, "embed-models")


def test_llm_embeds_music_files_and_finds_them_by_text(llm_env, tmp_path, bench_dir, demo_model):
    scores = tmp_path / "scores"
    scores.mkdir()
    names = sorted(p.name for p in (bench_dir / "abc").glob("*.abc"))[:6]
    for name in names:
        shutil.copy(bench_dir / "abc" / name, scores / name)
    llm_cli(llm_env, "embed-multi", "tunes", "--files", str(scores), "*.abc", "--binary", "-m", "clamp2-demo")
    found = [json.loads(line) for line in llm_cli(llm_env, "similar", "tunes", "-c", "a jig").splitlines()]
    assert sorted(h["id"] for h in found) == names
    query = demo_model.encode_text("a jig")
    music = {n: demo_model.encode_music(Path(scores / n)) for n in names}
    assert found[0]["id"] == max(names, key=lambda n: cos(query, music[n]))
    for hit in found:
        assert hit["score"] == pytest.approx(cos(query, music[hit["id"]]), abs=1e-4)


def test_langchain_embeddings_and_qdrant_vector_store(tmp_path, demo_model):
    from clamp2_engine.integrations.langchain import CLaMP2Embeddings

    embeddings = CLaMP2Embeddings("demo")
    assert cos(embeddings.embed_query(TEXT), demo_model.encode_text(TEXT)) >= 0.99999
    docs = embeddings.embed_documents(["a jig", "a chorale"])
    assert len(docs) == 2
    assert cos(docs[1], demo_model.encode_text("a chorale")) >= 0.99999
    import langchain_qdrant as qdrant  # in [dev]
    from qdrant_client import QdrantClient, models

    client = QdrantClient(":memory:")  # a collection as clamp2-engine lays it out: named vectors, titles
    dim = len(docs[0])
    client.create_collection(
        "music", vectors_config={"abc": models.VectorParams(size=dim, distance=models.Distance.COSINE)}
    )
    client.upsert(
        "music",
        [
            models.PointStruct(
                id=i,
                vector={"abc": demo_model.encode_text(t).tolist()},
                payload={"title": t, "metadata": {"composer": c}},
            )
            for i, (t, c) in enumerate(
                [("a jig in D", "trad"), ("a chorale in G", "Bach"), ("a waltz", "Strauss")]
            )
        ],
    )
    store = qdrant.QdrantVectorStore(
        client=client,
        collection_name="music",
        embedding=embeddings,
        vector_name="abc",
        content_payload_key="title",
        metadata_payload_key="metadata",
    )
    [doc] = store.similarity_search("ein Choral", k=1)
    assert doc.page_content == "a chorale in G"
    assert doc.metadata["composer"] == "Bach"


def test_the_llm_plugin_encodes_texts_with_the_models_cached_export(demo_model):
    from clamp2_engine.exporters.onnx import export_onnx
    from clamp2_engine.integrations.llm_plugin import CLaMP2Embedding, suffix_of

    export_onnx("demo", None, verify=False)  # the model cache, in this test's own home
    model = CLaMP2Embedding("clamp2-demo", "demo")
    [vector] = list(model.embed_batch([TEXT]))
    assert model.towers["text"].encoder.runtime.backend == "onnx"
    assert cos(vector, demo_model.encode_text(TEXT)) >= 0.99999
    assert [
        suffix_of(b)
        for b in (b"MThd\0\0", b"PK\x03\x04", b"ticks_per_beat 480\n", b"<?xml ?>", b"X:1\nK:C\n")
    ] == [
        ".mid",
        ".mxl",
        ".mtf",
        ".musicxml",
        ".abc",
    ]
