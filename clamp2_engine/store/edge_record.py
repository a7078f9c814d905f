"""An embedded collection's record on disk: ``collection.json`` and its copy ``collection.json.bak``
(written first, so that one of the two is always whole); a lost or unreadable record is said as such,
never taken for a collection of another program, nor for an unfinished creation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from clamp2_engine.errors import CollectionDamagedError, CollectionNotFoundError, DiskFullError, StoreError

RECORD_FILE = "collection.json"
BACKUP_FILE = RECORD_FILE + ".bak"


def record_lost(name: str) -> CollectionDamagedError:
    return CollectionDamagedError(
        f"collection {name!r} has lost its record ({RECORD_FILE}); its points are kept: "
        f"`clamp2-engine collections repair {name}` writes it again"
    )


def _damaged(folder: Path, name: str, why: str) -> CollectionDamagedError:
    return CollectionDamagedError(
        f"the record of collection {name!r} ({folder / RECORD_FILE}) is damaged: {why[:120]}; "
        f"`clamp2-engine collections repair {name}` writes it again"
    )


def read_record(folder: Path, name: str, has_shard: bool) -> dict[str, Any] | None:
    """The record in ``folder``; :class:`CollectionDamagedError` when it is lost (``has_shard``) or
    unreadable, :class:`CollectionNotFoundError` when there is no collection."""
    try:
        text = (folder / RECORD_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        if has_shard:
            raise record_lost(name) from None
        raise CollectionNotFoundError(f"no collection {name!r}") from None
    except (OSError, ValueError) as exc:
        raise _damaged(folder, name, getattr(exc, "strerror", None) or str(exc)) from None
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise _damaged(folder, name, f"not JSON ({exc})") from None
    return meta if isinstance(meta, dict) else None


def read_backup(folder: Path) -> dict[str, Any] | None:
    """The record's copy, or ``None``."""
    try:
        meta = json.loads((folder / BACKUP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def write_record(folder: Path, name: str, meta: dict[str, Any]) -> None:
    """Write the record and its copy (the copy first), each atomically."""
    text = json.dumps(meta, ensure_ascii=False, indent=1)
    for file in (BACKUP_FILE, RECORD_FILE):
        path = folder / file
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == 28:  # ENOSPC
                raise DiskFullError(f"the disk of {folder.parent} is full: free some space") from None
            raise StoreError(f"cannot write the record of {name!r}: {exc.strerror or exc}") from None
