"""What the embedded engine's files need before Qdrant Edge maps them: a creation lock, the free space a
write needs, segments it would delete, and a trial open in a child process when the files changed since
this engine last closed them (a damaged id tracker aborts the process from native code: it must abort a
child, never ``serve``).

Nothing here reads Qdrant Edge's file formats; it knows three facts of its layout: segments live in
``shard/segments/<uuid>/``, a segment without ``version.info`` is deleted on open (an unfinished one, to
Qdrant), and an open shard holds ``flock`` on ``shard/wal``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from clamp2_engine.errors import CollectionDamagedError, DiskFullError, StoreInUseError

STAMP_FILE = "closed-clean.json"  # the shard's files as this engine last closed them
QUARANTINE_DIR = "set-aside"  # segments Qdrant Edge would have deleted on open
MiB = 2**20
# what a write may need beyond its own bytes: Qdrant Edge grows its storages in 32 MiB chunks, several
# at once (each vector name, payloads, the lexical index, the write-ahead log), and an empty collection
# takes about 67 MB; a refused write still leaves what opening needs
WRITE_MARGIN = 288 * MiB
CREATE_NEED = 128 * MiB
OPEN_NEED = 64 * MiB  # opening maps write-ahead-log files of 32 MiB: on a full disk, a bus error
PROBE_TIMEOUT = 120.0

_PROBE = """
import sys, qdrant_edge as qe
shard = qe.EdgeShard.load(sys.argv[1])
shard.count(qe.CountRequest(exact=True))
shard.close()
"""


@contextlib.contextmanager
def creation_lock(root: Path) -> Iterator[None]:
    """Hold the store folder's creation lock (the kernel's: a killed holder leaves none behind)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def shard_lock(shard: Path, name: str) -> Iterator[None]:
    """Hold the lock an open shard holds, without opening it (to drop a collection that cannot be
    opened); :class:`StoreInUseError` when a process has it open."""
    wal = shard / "wal"
    if not wal.is_dir():
        yield
        return
    fd = os.open(wal, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreInUseError(f"collection {name!r} is in use by another process") from None
        yield
    finally:
        os.close(fd)


def need_space(folder: Path, need: int, what: str) -> None:
    """:class:`DiskFullError` unless ``folder``'s file system has ``need`` bytes free (a write that runs
    out of room inside a mapped file is a bus error, not an exception: it must not start)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < need:
        raise DiskFullError(
            f"not enough free space for {what}: {free / MiB:.0f} MiB free in {folder}, about "
            f"{need / MiB:.0f} MiB needed; free some space and run it again (nothing was written)"
        )


def is_disk_full(exc: BaseException) -> bool:
    text = str(exc)
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in text or "Failed to flush" in text


def fingerprint(shard: Path) -> str:
    """A digest of every file's name, size and modification time under ``shard``."""
    h = hashlib.sha256()
    for folder, dirs, files in os.walk(shard):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(folder, f)
            try:
                st = os.stat(path)
            except OSError:
                continue
            h.update(f"{os.path.relpath(path, shard)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _stamp_path(shard: Path) -> Path:
    """Beside the shard: ``closed-clean.json`` (a collection's single shard ``shard/``), or
    ``.GROUP.closed-clean.json`` (a vector group's shard in ``shards/``)."""
    return shard.parent / (STAMP_FILE if shard.name == "shard" else f".{shard.name}.{STAMP_FILE}")


def mark_closed(shard: Path) -> None:
    """Record the shard's files as this engine left them (after a clean close)."""
    path = _stamp_path(shard)
    with contextlib.suppress(OSError):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": fingerprint(shard)}), encoding="utf-8")
        os.replace(tmp, path)


def _closed_clean(shard: Path) -> bool:
    try:
        stamp = json.loads(_stamp_path(shard).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("fingerprint") == fingerprint(shard)


def forget_closed(shard: Path) -> None:
    """The files are about to change: the next open checks them again unless this engine closes them."""
    with contextlib.suppress(OSError):
        _stamp_path(shard).unlink()


def set_aside_unfinished(shard: Path) -> list[str]:
    """Move segments without ``version.info`` (which Qdrant Edge deletes on open) into ``set-aside/``
    beside the shard, never deleting them; their names. An unfinished segment of a killed optimizer is
    harmless there; a damaged one keeps its points for inspection (the point count tells which)."""
    segments = shard / "segments"
    moved = []
    if not segments.is_dir():
        return moved
    for seg in sorted(segments.iterdir()):
        if seg.is_dir() and not (seg / "version.info").exists():
            target = shard.parent / QUARANTINE_DIR / seg.name
            target.parent.mkdir(exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            os.replace(seg, target)
            moved.append(seg.name)
    return moved


def trial_open(shard: Path, name: str) -> None:
    """Open ``shard`` in a child process first unless its files are as this engine last closed them; a
    child that aborts (native code on damaged files) is :class:`CollectionDamagedError` here, naming what
    it said. The lock the child takes is released when it exits."""
    if _closed_clean(shard):
        return
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, os.fspath(shard)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            env={**os.environ, "RUST_BACKTRACE": "1"},  # its frames say which part failed
        )
    except subprocess.TimeoutExpired:
        raise CollectionDamagedError(
            f"collection {name!r} could not be opened within {PROBE_TIMEOUT:.0f} s ({shard})"
        ) from None
    if done.returncode == 0:
        return
    said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    if any("WouldBlock" in line for line in said):
        raise StoreInUseError(f"collection {name!r} is in use by another process")
    reason = next((line for line in said if "failed" in line.lower() or "error" in line.lower()), None)
    reason = (reason or (said[-1] if said else f"exit code {done.returncode}"))[:200]
    signal = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
    part = next((files for key, files in PARTS if any(key in line for line in said)), "its files")
    raise CollectionDamagedError(
        f"collection {name!r} is damaged: opening {part} in {shard} stops the storage engine "
        f"({signal}: {reason}); drop it and ingest again, or restore the folder from a backup"
    )


# a part of a segment, by the engine's frames that name it, and the files that hold it
PARTS = (
    ("id_tracker", "the id tracker (segments/*/mutable_id_tracker.*)"),
    ("vector_storage", "a vector storage (segments/*/vector_storage-*)"),
    ("payload_index", "a payload index (segments/*/payload_index)"),
    ("payload_storage", "the payload storage (segments/*/payload_storage)"),
    ("wal", "the write-ahead log (wal/)"),
)
