"""Filesystem helpers: data folders, safe joins, input discovery and mirrored outputs."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import platformdirs

APP_NAME = "clamp2-engine"


def data_dir() -> Path:
    """The user's data folder for clamp2-engine (XDG on Linux; ``CLAMP2_HOME`` overrides)."""
    override = os.environ.get("CLAMP2_HOME")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))


def shown_name(name: str | os.PathLike) -> str:
    """``name`` as text any JSON or terminal takes: a byte of a file name that is not UTF-8 (Python keeps
    it as a lone surrogate) written ``\\xNN``; :func:`real_name` turns it back."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def real_name(shown: str) -> str:
    """The file name :func:`shown_name` showed as ``shown``."""
    if "\\x" not in shown:
        return shown
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), shown.encode("utf-8"))
    return os.fsdecode(raw)


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


def input_problem(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str | None:
    """Why ``path`` cannot be an input file, decided without opening it (``None``: it can): it must be a
    regular file (not a FIFO, socket or device, which could block a reader forever), and a link must lead
    to a file inside ``root`` (its folder when ``root`` is None)."""
    import stat

    p = Path(path)
    try:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            base = Path(root if root is not None else p.parent).resolve()
            target = p.resolve()
            if target != base and base not in target.parents:
                return f"a link that leads out of {base} (to {target}): not followed"
            st = os.stat(p)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a folder"
            if stat.S_ISDIR(st.st_mode)
            else "a special file"
        )
        return f"not a regular file ({kind})"
    return None


Rejected = Callable[[Path, str], None]


def iter_files(
    src: str | os.PathLike, suffixes: Iterable[str] | None = None, rejected: Rejected | None = None
) -> Iterator[Path]:
    """Yield the input files under ``src`` (or ``src`` itself) in sorted order, filtered by suffix
    (lower-case, with dot). Hidden files and folders are skipped; links are not followed out of the tree;
    a matching name that is no regular file (a FIFO, a device, a link out of the tree) is passed to
    ``rejected(path, reason)`` instead of being yielded — nothing is opened to decide."""
    src_p = Path(src)
    wanted = {s.lower() for s in suffixes} if suffixes is not None else None

    def keep(p: Path, root: Path) -> bool:
        problem = input_problem(p, root)
        if problem and rejected is not None:
            rejected(p, problem)
        return problem is None

    if not src_p.is_dir():
        if (wanted is None or src_p.suffix.lower() in wanted) and keep(src_p, src_p.parent):
            yield src_p
        return
    for dirpath, dirnames, filenames in os.walk(src_p):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if (wanted is None or p.suffix.lower() in wanted) and keep(p, src_p):
                yield p


def mirror_path(
    src_root: str | os.PathLike, file: str | os.PathLike, dst_root: str | os.PathLike, suffix: str
) -> Path:
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
    # the temporary name is short whatever the target's (a 255-byte name is legal; adding to it is not)
    digest = hashlib.sha256(os.fsencode(path_p.name)).hexdigest()[:16]
    tmp = path_p.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path_p)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Text flavour of :func:`atomic_write_bytes` (UTF-8, newlines kept as given)."""
    atomic_write_bytes(path, text.encode("utf-8"))
