"""Helpers shared by the parity tests of every backend: the fixture's cases and the cosine check."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_COSINE = 0.99999
CASES = [
    ("clamp2_normalized", "abc"),
    ("clamp2_normalized", "mtf"),
    ("clamp2_normalized", "txt"),
    ("clamp2_raw", "abc"),
    ("clamp2_raw", "mtf"),
    ("clamp2_raw", "txt"),
    ("m3", "abc"),
    ("m3", "mtf"),
]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def expected_files(parity_dir: Path, kind: str, sub: str) -> list[Path]:
    files = sorted((parity_dir / "expected" / kind / sub).glob("*.npy"))
    assert files, f"no expected files for {kind}/{sub}"
    return files


def input_for(parity_dir: Path, sub: str, expected: Path) -> Path:
    return parity_dir / "inputs" / sub / f"{expected.stem}.{sub}"
