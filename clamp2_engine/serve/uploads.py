"""A client's music file: read with a size limit, converted to model input in a worker with a time limit."""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from fastapi import UploadFile
from starlette.exceptions import HTTPException

from clamp2_engine.errors import first_line

MAX_UPLOAD = 8 * 2**20
UPLOAD_TIMEOUT = 30.0  # seconds for one upload's conversion: below the request's limit, so the reason is told
UPLOAD_MEMORY = 3 * 2**30  # bytes of address space for the converting worker


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


def _convert(task: tuple[str, str]) -> str:
    """Model input from an uploaded file (in a worker process)."""
    from clamp2_engine.ingest.corpus import music_query_input

    return music_query_input(Path(task[0]), timeout=None)[1]  # this worker is the time limit


def limited_worker() -> None:
    """Worker set-up: quiet, and its address space capped at ``UPLOAD_MEMORY`` bytes (a pathological
    file fails in its worker, not in the server)."""
    import resource

    from clamp2_engine.ingest.convert.batch import quiet_worker

    quiet_worker()
    resource.setrlimit(resource.RLIMIT_AS, (UPLOAD_MEMORY, UPLOAD_MEMORY))


async def music_input(file: UploadFile) -> str:
    """Model input (interleaved ABC or MTF) from an uploaded score, MIDI or .mtf file, converted in a
    worker process with a time limit below the request's and a memory limit; 422 with the reason when it
    is not music this engine reads or takes too long."""
    from clamp2_engine.ingest.convert.batch import PRELOAD
    from clamp2_engine.ingest.convert.pool import run_tasks

    path = await save_upload(file)
    try:
        [outcome] = await asyncio.to_thread(
            lambda: list(
                run_tasks(_convert, [(str(path), "")], 1, UPLOAD_TIMEOUT, limited_worker, preload=PRELOAD)
            )
        )
    finally:
        path.unlink(missing_ok=True)
    if not outcome.ok:
        raise HTTPException(422, plain(outcome.error).replace(path.name, file.filename or "upload"))
    return outcome.result


def plain(error: str) -> str:
    """A worker's error as a sentence for a client: no exception class, no file and line."""
    text = re.sub(r"\s*\(at [^()]*:\d+\)", "", error)
    text = re.sub(r"\b[A-Z]\w*(Error|Exception|Warning): ", "", text)
    if text.startswith("timed out after"):
        return f"the upload could not be converted within {UPLOAD_TIMEOUT:g} s"
    if text.startswith("worker died"):
        return "the upload could not be converted within the server's memory limit"
    return first_line(ValueError(text), 300)
