"""Shared fixtures: the parity fixture and bench corpus kept in tests/fixtures, the models loaded once per
run, scripted LLM servers, a store on each engine, and an isolated home."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports huggingface_hub (it reads this once): tests never reach for a hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The reference's exact numbers on every CPU, for fixtures of any scope too: `dtype="auto"` would pick
# bf16 where the CPU computes it natively (tests/test_precision.py checks what auto picks).
os.environ["CLAMP2_DTYPE"] = "fp32"
# ingest exports the query tower to ONNX for fast searches: off in tests (a few seconds each), on in the
# tests of that step (tests/test_first_hour.py)
os.environ["CLAMP2_PREPARE_QUERIES"] = "0"

import pytest  # noqa: E402
from fixture_paths import BENCH, PARITY, require  # noqa: E402
from helpers import spec_for  # noqa: E402

from clamp2_engine.store import open_store  # noqa: E402


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return require(PARITY)


@pytest.fixture(scope="session")
def bench_dir() -> Path:
    return require(BENCH)


@pytest.fixture(scope="session")
def parity_model(parity_dir):
    """The parity fixture's CLaMP 2 (both towers), loaded once for the run: treat it as read-only."""
    from index_helpers import load_model

    return load_model(parity_dir)


@pytest.fixture(scope="session")
def text_model(parity_dir):
    """The parity fixture's CLaMP 2 with its text tower only, loaded once for the run."""
    from index_helpers import load_model

    return load_model(parity_dir, towers=("text",))


@pytest.fixture(scope="session")
def demo_model():
    """The shipped demo model (both towers), loaded once for the run."""
    from clamp2_engine import CLaMP2

    return CLaMP2.from_pretrained("demo")


@pytest.fixture
def llm_server():
    """Start scripted OpenAI-protocol servers on 127.0.0.1 (``llm_server(script, **options)``); all are
    stopped when the test ends."""
    from llm_server import ScriptedLLM

    started: list[ScriptedLLM] = []

    def start(*args, **kwargs) -> ScriptedLLM:
        server = ScriptedLLM(*args, **kwargs).__enter__()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.__exit__(None, None, None)


SERVICE_PACKAGES = ("qdrant-client", "fastembed")  # what a service beside clamp2-engine installs


@pytest.fixture(scope="session")
def service_python() -> str:
    """A Python with qdrant-client and fastembed alone (no clamp2-engine, torch or transformers): a
    virtual environment made once under the user's cache folder (``pip install`` from the package index)."""
    import subprocess
    import sys
    import venv

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "clamp2-engine-tests"
    folder = root / f"service-py{sys.version_info.major}{sys.version_info.minor}"
    python = folder / "bin" / "python"
    ready = folder / ".ready"
    if not ready.is_file():
        venv.create(folder, with_pip=True, clear=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *SERVICE_PACKAGES],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, (
            f"could not install {SERVICE_PACKAGES} for the service test: {done.stderr[-2000:]}"
        )
        ready.write_text("ok\n")
    return str(python)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's data folder (embedded Qdrant, caches) out of the user's home."""
    home = tmp_path_factory.mktemp("clamp2-home")
    monkeypatch.setenv("CLAMP2_HOME", str(home))
    monkeypatch.delenv("CLAMP2_QDRANT_URL", raising=False)
    monkeypatch.delenv("CLAMP2_QDRANT_PATH", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CLAMP2_DTYPE", "fp32")
    monkeypatch.setenv("CLAMP2_PREPARE_QUERIES", "0")
    yield


@pytest.fixture(params=["edge", "server"])
def store(request, tmp_path):
    """A store on each engine: Qdrant Edge in a folder, and the server path (qdrant-client in memory)."""
    with open_store(spec_for(request.param, tmp_path)) as s:
        yield s
