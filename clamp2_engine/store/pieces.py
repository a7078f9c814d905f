"""One piece of a collection as its readers see it (``GET /pieces/ID``, the MCP tool ``read_piece``): its
payload by id, and its source file, found inside its corpus folder and never outside it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clamp2_engine.errors import about
from clamp2_engine.paths import UnsafePathError, real_name, safe_join
from clamp2_engine.store.collection import Collection
from clamp2_engine.store.fields import KEYS


class PieceNotFound(LookupError):
    """No such piece, or its file is not where the collection says."""


def get_piece(coll: Collection, pid: str) -> dict[str, Any]:
    """``{"id", "collection", "payload"}`` of point ``pid`` (its canonical form; the folded keys left out)."""
    try:
        pid = str(uuid.UUID(pid))
    except ValueError:
        raise PieceNotFound(f"{pid[:40]!r} is not a point id (a UUID, as in the hits' `id`)") from None
    found = coll.retrieve([pid])
    if not found:
        raise PieceNotFound(f"no piece {pid!r} in collection {coll.name!r}")
    payload = {k: v for k, v in found[0].payload.items() if k != KEYS}
    return {"id": pid, "collection": coll.name, "payload": payload}


def piece_file(
    coll: Collection, piece: dict[str, Any], prefer: str = "abc", roots: Mapping[str, Path] | None = None
) -> Path:
    """The source file of a piece (the one its ``prefer`` vector came from), inside its corpus folder
    (``roots`` first, else the folder the collection recorded at ingest)."""
    p = piece["payload"]
    root = (roots or {}).get(p.get("corpus")) or coll.record.corpora.get(str(p.get("corpus")))
    if not root:
        raise about(
            PieceNotFound(
                f"the folder of corpus {p.get('corpus')!r} is unknown (ingest it again, or start the server "
                "with its folder)"
            ),
            "corpus_root",
        )
    sources = p.get("sources") or {}
    rel = sources.get(prefer) or p.get("source") or next(iter(sources.values()), None)
    try:
        path = safe_join(root, real_name(str(rel)))
    except (UnsafePathError, TypeError):
        raise PieceNotFound(f"the piece's file {rel!r} is not inside its corpus folder") from None
    if not path.is_file():
        raise PieceNotFound(f"the piece's file {rel} is no longer in {root}")
    return path


def abc_text(coll: Collection, piece: dict[str, Any], roots: Mapping[str, Path] | None = None) -> str | None:
    """The piece's interleaved ABC when its file is ABC (``None`` otherwise, or when it cannot be read)."""
    try:
        path = piece_file(coll, piece, "abc", roots)
        return path.read_text(encoding="utf-8", errors="replace") if path.suffix.lower() == ".abc" else None
    except (PieceNotFound, OSError):
        return None
