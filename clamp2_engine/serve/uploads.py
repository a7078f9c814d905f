"""A client's music file: read with a size limit, converted to model input in a worker with a time limit."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from fastapi import UploadFile
from starlette.exceptions import HTTPException

from clamp2_engine.errors import first_line

MAX_UPLOAD = 8 * 2**20


async def save_upload(file: UploadFile) -> Path:
    """The upload in a temporary file with its suffix (size-limited); the caller deletes it."""
    suffix = Path(file.filename or "").suffix.lower()
    if not suffix or len(suffix) > 10 or not suffix[1:].isalnum():
        raise HTTPException(
            415, "the upload needs a file name with a music suffix (.mid .xml .mxl .abc .krn .mtf ...)"
        )
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, f"the upload is over {MAX_UPLOAD // 2**20} MiB")
    if not data:
        raise HTTPException(400, "the upload is empty")
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as fh:
        fh.write(data)
    return Path(fh.name)


async def music_input(file: UploadFile) -> str:
    """Model input (interleaved ABC or MTF) from an uploaded score, MIDI or .mtf file; 422 when it is not
    music this engine reads."""
    from clamp2_engine.ingest.corpus import music_query_input

    path = await save_upload(file)
    try:
        _modality, data = await asyncio.to_thread(music_query_input, path)
    except ValueError as exc:
        raise HTTPException(422, first_line(exc).replace(path.name, file.filename or "upload")) from None
    finally:
        path.unlink(missing_ok=True)
    return data
