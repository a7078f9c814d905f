"""Tiny training configurations the tests share: a CPU loop without progress bars, a 1-layer CLaMP 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clamp2_engine.train.config import CLaMP2Options, LoopConfig


def tiny_loop(out: Path, **overrides: Any) -> LoopConfig:
    """A short CPU training loop writing to ``out`` (``overrides``: any :class:`LoopConfig` field)."""
    return LoopConfig(**{"out": out, "progress": False, "device": "cpu", **overrides})


def tiny_clamp2(items: Path, parity_dir: Path, **overrides: Any) -> CLaMP2Options:
    """A 1-layer CLaMP 2 over ``items`` with the parity fixture's text model (``overrides``: any field)."""
    sizes = dict(
        hidden_size=32, num_layers=1, patch_length=16, text_hidden_size=32, text_layers=1, embed_dim=32
    )
    return CLaMP2Options(items=items, text_model=str(parity_dir / "text_model"), **{**sizes, **overrides})
