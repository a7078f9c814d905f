"""Filesystem helpers: data folders, safe joins, input discovery and mirrored outputs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import platformdirs

APP_NAME = "clamp2-engine"


def data_dir() -> Path:
    """The user's data folder for clamp2-engine (XDG on Linux; ``CLAMP2_HOME`` overrides)."""
    override = os.environ.get("CLAMP2_HOME")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))


class UnsafePathError(ValueError):
    """A relative path taken from metadata points outside its root."""


def safe_join(root: str | os.PathLike, rel: str | os.PathLike) -> Path:
    """Join ``rel`` under ``root``, refusing absolute paths and anything that escapes ``root``."""
    root_p = Path(root).resolve()
    rel_s = os.fspath(rel)
    if not rel_s or os.path.isabs(rel_s) or "\x00" in rel_s:
        raise UnsafePathError(f"unsafe path {rel_s!r}: must be relative to {root_p}")
    candidate = (root_p / rel_s).resolve()
    if candidate != root_p and root_p not in candidate.parents:
        raise UnsafePathError(f"path {rel_s!r} escapes its root {root_p}")
    return candidate


def iter_files(src: str | os.PathLike, suffixes: Iterable[str] | None = None) -> Iterator[Path]:
    """Yield files under ``src`` (or ``src`` itself) in sorted order, filtered by suffix (lower-case,
    with dot). Hidden files and folders are skipped; links are not followed out of the tree."""
    src_p = Path(src)
    wanted = {s.lower() for s in suffixes} if suffixes is not None else None
    if src_p.is_file():
        if wanted is None or src_p.suffix.lower() in wanted:
            yield src_p
        return
    for dirpath, dirnames, filenames in os.walk(src_p):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if wanted is None or p.suffix.lower() in wanted:
                yield p


def mirror_path(src_root: str | os.PathLike, file: str | os.PathLike, dst_root: str | os.PathLike,
                suffix: str) -> Path:
    """Where the output for ``file`` goes: ``dst_root`` mirrors ``src_root``'s tree, ``stem + suffix``.

    When ``src_root`` is a single file, the output lands directly in ``dst_root``.
    """
    src_root_p, file_p = Path(src_root), Path(file)
    rel = Path(file_p.name) if src_root_p.is_file() else file_p.relative_to(src_root_p)
    return Path(dst_root) / rel.parent / (rel.stem + suffix)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename, so readers never see half a file."""
    path_p = Path(path)
    path_p.parent.mkdir(parents=True, exist_ok=True)
    tmp = path_p.with_name(f".{path_p.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path_p)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Text flavour of :func:`atomic_write_bytes` (UTF-8, newlines kept as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))
