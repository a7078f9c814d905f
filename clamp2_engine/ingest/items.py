"""Ingest's keying of metadata items: the unit an item is stored under and the point id it got."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from clamp2_engine.errors import about
from clamp2_engine.store import UnitState, piece_identity, point_id
from clamp2_engine.types import MIDI_SUFFIXES, MTF_SUFFIXES

MIDI_LIKE = tuple(sorted(MTF_SUFFIXES | MIDI_SUFFIXES))


def item_filepaths(item: Mapping[str, Any]) -> list[str]:
    """An item's ``filepaths`` (a string or a list) as normalized POSIX paths, in order, deduplicated."""
    fps = item.get("filepaths")
    if isinstance(fps, str):
        fps = [fps]
    if not isinstance(fps, list):
        return []
    out: list[str] = []
    for fp in fps:
        if isinstance(fp, str) and fp.strip():
            norm = PurePosixPath(fp.strip().replace("\\", "/")).as_posix()
            if norm not in out:
                out.append(norm)
    return out


def item_unit(item: Mapping[str, Any]) -> str:
    """The unit key of a metadata item: its sorted file paths."""
    fps = item_filepaths(item)
    if not fps:
        raise ValueError("item has no filepaths")
    return "item:" + json.dumps(sorted(fps), ensure_ascii=False)


def item_point_id(
    item: Mapping[str, Any],
    *,
    modality: str = "any",
    root: str | os.PathLike,
    corpus: str | None = None,
    units: Mapping[str, UnitState] | None = None,
) -> str:
    """The point id of a metadata item ingested from the corpus at ``root`` (the JSONL's folder).

    With ``units`` (the collection's :func:`unit_states` for that corpus) the item is looked up as it was
    ingested: as a metadata item (seed layout) or as its one file (a plain folder); an item whose piece is
    not there raises ``ValueError`` saying so. Raises ``ValueError`` too when the item has no file that
    gives ``modality`` (no such vector): ABC comes from scores, MTF from MIDI and ``.mtf`` files (and from
    scores rendered to MIDI).
    """
    fps = item_filepaths(item)
    if modality == "abc" and all(fp.lower().endswith(MIDI_LIKE) for fp in fps):
        raise ValueError("item has no .abc file (nor any score)")
    if (
        modality == "mtf"
        and not any(fp.lower().endswith(MIDI_LIKE) for fp in fps)
        and all(fp.lower().endswith(".abc") for fp in fps)
    ):
        raise ValueError("item has no .mtf file (nor any MIDI file or score)")
    corpus = corpus or Path(root).resolve().name
    key = item_unit(item)
    if units is not None:
        if key not in units and len(fps) == 1 and fps[0] in units:
            key = fps[0]  # ingested as a plain folder: the unit is the file
        if key not in units:
            raise about(
                ValueError(
                    f"not in the collection as part of corpus {corpus!r} (not ingested, or ingested "
                    "under another corpus name)"
                ),
                "corpus",
            )
        if units[key].parts > 1:
            raise ValueError(f"{fps[0]} holds {units[key].parts} pieces: an item must name one piece")
    return point_id(piece_identity(corpus, key))
