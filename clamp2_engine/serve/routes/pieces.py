"""``GET /pieces/{id}`` and what the page shows of a piece: its engraved score, its MIDI, its sound and
when each engraved note sounds."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from starlette.exceptions import HTTPException

from clamp2_engine.serve.deps import ServiceDep
from clamp2_engine.serve.models import ERRORS, Error, Piece
from clamp2_engine.serve.service import PieceNotFound, Service

router = APIRouter(prefix="/pieces", tags=["pieces"], responses=ERRORS)
JSON = {200: {"content": {"application/json": {}}}}


async def rendering(
    svc: Service, pid: str, collection: str | None, prefer: str, make: Callable
) -> tuple[dict, Any]:
    """A piece, and ``make(file, part)`` of its ``prefer`` source file (run on a thread: it may wait on a
    worker process)."""
    found = svc.piece(pid, collection)
    path = svc.piece_file(found, prefer)
    return found, await svc.in_music_pool(make, path, str(found["payload"].get("part") or ""))


@router.get("/{pid}", response_model=Piece, response_model_exclude_unset=True)
async def piece(pid: str, svc: ServiceDep, collection: str | None = None) -> Piece:
    """A piece's payload, and its ABC when its source is ABC."""
    found = svc.piece(pid, collection)
    p = found["payload"]
    if str((p.get("sources") or {}).get("abc", "")).lower().endswith(".abc"):
        with contextlib.suppress(PieceNotFound, OSError):
            text = svc.piece_file(found, "abc").read_text(encoding="utf-8", errors="replace")
            found["abc"] = text[:200_000]
    return Piece.model_validate(found)


@router.get("/{pid}/score.svg", response_class=Response, responses={200: {"content": {"image/svg+xml": {}}}})
async def score(pid: str, svc: ServiceDep, collection: str | None = None) -> Response:
    """The first page engraved by Verovio (a piano roll for MIDI-only pieces)."""
    _found, svg = await rendering(svc, pid, collection, "abc", svc.renderer.svg)
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=3600"})


@router.get("/{pid}/pages.json", response_class=Response, responses=JSON)
async def pages(pid: str, svc: ServiceDep, collection: str | None = None) -> Response:
    """Every page of the score engraved by Verovio: ``{"pages": [svg, ...], "total": n}`` (40 at most;
    the piano roll for MIDI-only pieces)."""
    _found, data = await rendering(svc, pid, collection, "abc", svc.renderer.pages)
    return Response(data, media_type="application/json", headers={"Cache-Control": "max-age=3600"})


@router.get("/{pid}/midi", response_class=Response, responses={200: {"content": {"audio/midi": {}}}})
async def midi(pid: str, svc: ServiceDep, collection: str | None = None) -> Response:
    """The piece as a MIDI file."""
    found, data = await rendering(svc, pid, collection, "mtf", svc.renderer.midi)
    name = (Path(str(found["payload"].get("source") or pid)).stem or "piece") + ".mid"
    return Response(
        data, media_type="audio/midi", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get(
    "/{pid}/audio",
    response_class=FileResponse,
    responses={200: {"content": {"audio/mpeg": {}}}, 501: {"model": Error}},
)
async def audio(pid: str, svc: ServiceDep, request: Request, collection: str | None = None) -> FileResponse:
    """The piece as sound (MP3, mono; its MIDI played through a General MIDI SoundFont); ranges work, so
    a player can seek. 501 with the reason when this server has no synthesizer or SoundFont."""
    from clamp2_engine.serve.audio import unavailable

    if reason := unavailable():
        raise HTTPException(501, reason)
    _found, made = await rendering(svc, pid, collection, "mtf", svc.renderer.audio)
    check_range(request.headers.get("range"), made.stat().st_size)
    return FileResponse(made, media_type="audio/mpeg", headers={"Cache-Control": "max-age=3600"})


@router.get("/{pid}/timemap.json", response_class=Response, responses=JSON)
async def timemap(pid: str, svc: ServiceDep, collection: str | None = None) -> Response:
    """When the notes of the engraved first page sound: ``[{"ms", "on": [ids], "off": [ids]}]`` (ids of
    ``score.svg``'s elements; ``[]`` for MIDI-only pieces)."""
    _found, data = await rendering(svc, pid, collection, "abc", svc.renderer.timemap)
    return Response(data, media_type="application/json", headers={"Cache-Control": "max-age=3600"})


def check_range(header: str | None, size: int) -> None:
    """A ``Range`` header the file can answer, else the JSON error every other answer has (Starlette's
    own answers these in plain text): 400 malformed, 416 beyond the end."""
    if header is None:
        return
    unit, _, spec = header.partition("=")
    malformed = HTTPException(400, f"the Range header {header[:60]!r} is malformed: bytes=START-END")
    if unit.strip().lower() != "bytes" or not spec.strip():
        raise malformed
    for part in spec.split(","):
        start, dash, end = (x.strip() for x in part.partition("-"))
        if not dash or not (start or end) or not (start or "0").isdigit() or not (end or "0").isdigit():
            raise malformed
        if start and end and int(start) > int(end):
            raise HTTPException(400, f"the Range header {header[:60]!r} is malformed: START after END")
        if start and int(start) >= size:
            raise HTTPException(
                416, f"the Range starts beyond the file's {size} bytes", {"Content-Range": f"bytes */{size}"}
            )
