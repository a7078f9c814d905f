"""Shared fixtures: the read-only parity fixture and bench corpus beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything imports huggingface_hub (it reads this once): tests never reach for a hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLAMP2_SHARED", REPO.parent / "shared"))
PARITY = SHARED / "fixtures" / "clamp2-parity"
BENCH = SHARED / "bench-corpus"


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.fail(f"parity fixture not found at {PARITY} (set CLAMP2_SHARED)")
    return PARITY


@pytest.fixture(scope="session")
def bench_dir() -> Path:
    return BENCH


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep every test's data folder (embedded Qdrant, caches) out of the user's home."""
    home = tmp_path_factory.mktemp("clamp2-home")
    monkeypatch.setenv("CLAMP2_HOME", str(home))
    monkeypatch.delenv("CLAMP2_QDRANT_URL", raising=False)
    monkeypatch.delenv("CLAMP2_QDRANT_PATH", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
