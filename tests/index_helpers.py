"""Helpers shared by the index, ingest, search and eval-collection tests (no tests here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

SEED_NAMES = ["bach_bwv253", "bach_bwv335", "bach_bwv387", "bach_bwv11_6", "bach_bwv16_6", "bach_bwv1_6"]
GENRES = [["Chorale", "Baroque"], ["Chorale"], ["Hymn"], ["Chorale"], ["Hymn", "Baroque"], ["Cantata"]]


def model_args(parity_dir: Path) -> list[str]:
    return [
        "--model",
        str(parity_dir / "checkpoints" / "clamp2.pth"),
        "--text-model",
        str(parity_dir / "text_model"),
    ]


def load_model(parity_dir: Path, **kwargs):
    from clamp2_engine.pretrained import CLaMP2

    return CLaMP2.from_pretrained(
        parity_dir / "checkpoints" / "clamp2.pth", parity_dir / "text_model", **kwargs
    )


def build_seed(
    root: Path,
    bench: Path,
    names: list[str] = SEED_NAMES,
    extra_items: list[dict] | None = None,
    name: str = "items.jsonl",
) -> list[dict]:
    """A corpus in the seed layout: abc/, mtf/ and a JSONL with metadata and English summaries."""
    (root / "abc").mkdir(parents=True, exist_ok=True)
    (root / "mtf").mkdir(parents=True, exist_ok=True)
    items = []
    for i, n in enumerate(names):
        shutil.copy(bench / "abc" / f"{n}.abc", root / "abc" / f"{n}.abc")
        shutil.copy(bench / "mtf" / f"{n}.mtf", root / "mtf" / f"{n}.mtf")
        summary = (bench / "txt" / f"{n}.txt").read_text(encoding="utf-8").strip()
        items.append(
            {
                "title": n.replace("_", " "),
                "composer": "J.S. Bach",
                "genres": GENRES[i % len(GENRES)],
                "summary_en": summary,
                "summary_nen": {"language": "German", "summary": f"Ein Choral {i}"},
                "filepaths": [f"abc/{n}.abc", f"mtf/{n}.mtf"],
            }
        )
    items += extra_items or []
    (root / name).write_text(
        "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items), encoding="utf-8"
    )
    return items


def cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)
