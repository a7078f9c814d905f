"""Feature extraction over a folder tree: SRC -> DST with one float32 ``.npy`` per input.

Outputs mirror the reference extractors: pooled ``[1, D]`` (``pooled``) or raw ``[1, len, H]``,
``stem + '.npy'`` in a tree that mirrors SRC. Existing outputs are skipped (unless ``overwrite``); every
failed input is a line in ``DST/errors.jsonl`` and the run goes on.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clamp2_engine.paths import atomic_write_bytes, iter_files, mirror_path
from clamp2_engine.runlog import ErrorLog, RunSummary, describe_error, progress_bar
from clamp2_engine.types import MODEL_MUSIC_SUFFIXES as MUSIC_SUFFIXES
from clamp2_engine.types import TEXT_SUFFIXES

CHUNK_FILES = 256


@dataclass(frozen=True)
class EmbedTask:
    source: Path
    output: Path
    tower: str  # "music" | "text"


M3_TEXT = "M3 embeds music only; text files need a CLaMP 2 checkpoint"


def plan_tasks(
    src: Path, dst: Path, kind: str | None, overwrite: bool, errors: ErrorLog, summary: RunSummary
) -> list[EmbedTask]:
    """Discover inputs, map them to outputs, drop existing outputs and name collisions (``kind``
    ``m3``: text files are refused here; ``None``: the model says, once loaded)."""
    suffixes = MUSIC_SUFFIXES | (TEXT_SUFFIXES if kind != "m3" else frozenset())
    tasks: list[EmbedTask] = []
    claimed: dict[Path, Path] = {}

    def rejected(path: Path, reason: str) -> None:
        if path.suffix.lower() not in suffixes:
            summary.add("ignored (not .abc/.mtf/.txt)")
            return
        errors.add(path, "read", reason)
        summary.add("failed")

    found = list(iter_files(src, rejected=rejected))
    stems = Counter((p.parent, p.stem) for p in found if p.suffix.lower() in suffixes)
    for path in found:
        suffix = path.suffix.lower()
        if suffix not in suffixes:
            if suffix in TEXT_SUFFIXES:
                errors.add(path, "plan", M3_TEXT)
                summary.add("failed")
            else:
                summary.add("ignored (not .abc/.mtf/.txt)")
            continue
        # x.abc and x.mtf side by side: both embedded, as x.abc.npy and x.mtf.npy
        shared = stems[(path.parent, path.stem)] > 1
        out = mirror_path(src, path, dst, (path.suffix + ".npy") if shared else ".npy")
        if out in claimed:
            errors.add(path, "plan", f"output {out} is already claimed by {claimed[out]} (same stem)")
            summary.add("failed")
            continue
        claimed[out] = path
        if out.exists() and not overwrite:
            summary.add("skipped (exists)")
            continue
        tasks.append(EmbedTask(path, out, "music" if suffix in MUSIC_SUFFIXES else "text"))
    return tasks


def save_feature(path: Path, feature: np.ndarray) -> None:
    """Write a ``[1, ...]`` float32 ``.npy`` atomically."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(feature[None], dtype=np.float32))
    atomic_write_bytes(path, buf.getvalue())


def run_tasks(
    model,
    tasks: list[EmbedTask],
    pooled: bool,
    errors: ErrorLog,
    summary: RunSummary,
    progress: bool = True,
) -> None:
    """Prepare, embed (batched across files) and save; failures are isolated to their file."""
    encoder = model.encoder
    with progress_bar("embedding", len(tasks), enabled=progress and len(tasks) > 1) as advance:
        for start in range(0, len(tasks), CHUNK_FILES):
            chunk = tasks[start : start + CHUNK_FILES]
            for tower in ("music", "text"):
                group = [t for t in chunk if t.tower == tower]
                ready: list[tuple[EmbedTask, np.ndarray]] = []
                prepare = encoder.prepare_music if tower == "music" else encoder.prepare_text
                for task in group:
                    try:
                        ready.append((task, prepare(task.source)))
                    except Exception as exc:  # unreadable, empty, binary, undecodable...
                        errors.add(task.source, "read", describe_error(exc))
                        summary.add("failed")
                _embed_group(encoder, tower, ready, pooled, errors, summary)
            advance(len(chunk))


def _embed_group(
    encoder,
    tower: str,
    ready: list[tuple[EmbedTask, np.ndarray]],
    pooled: bool,
    errors: ErrorLog,
    summary: RunSummary,
) -> None:
    if not ready:
        return
    try:
        feats = encoder.features(tower, [ids for _, ids in ready], pooled, show_progress=False)
    except Exception as exc:
        if len(ready) == 1:  # this file's own failure
            errors.add(ready[0][0].source, "encode", describe_error(exc))
            summary.add("failed")
            return
        for item in ready:  # isolate the failing file(s): each of the others is embedded and saved
            _embed_group(encoder, tower, [item], pooled, errors, summary)
        return
    for (task, _), feat in zip(ready, feats, strict=True):
        try:
            save_feature(task.output, feat)
            summary.add("embedded")
        except OSError as exc:
            errors.add(task.source, "write", describe_error(exc))
            summary.add("failed")


def embed_tree(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    load_model: Callable[..., object],
    *,
    kind: str | None = None,
    pooled: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[RunSummary, ErrorLog]:
    """Embed every ``.abc``/``.mtf``/``.txt`` under ``src`` into ``dst``.

    ``load_model(towers)`` is called only when there is work, with only the towers the inputs need;
    ``kind`` (``clamp2``, ``m3``) is what the model is, when known before it is loaded (text files are
    refused for M3 either way).
    """
    src_p, dst_p = Path(src), Path(dst)
    if not src_p.exists():
        raise FileNotFoundError(f"no such file or folder: {src_p}")
    summary = RunSummary(f"embed {src_p} -> {dst_p}")
    errors = ErrorLog(dst_p / "errors.jsonl", reset=True)
    tasks = plan_tasks(src_p, dst_p, kind, overwrite, errors, summary)
    if tasks:
        model = load_model(tuple(t for t in ("music", "text") if any(task.tower == t for task in tasks)))
        if model.kind == "m3":
            for task in (t for t in tasks if t.tower == "text"):
                errors.add(task.source, "plan", M3_TEXT)
                summary.add("failed")
            tasks = [t for t in tasks if t.tower == "music"]
        run_tasks(model, tasks, pooled, errors, summary, progress)
    return summary, errors
