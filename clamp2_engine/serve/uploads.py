"""A client's music file: read with a size limit, converted to model input in a worker with a time limit."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path

from fastapi import Request, UploadFile
from starlette.exceptions import HTTPException

from clamp2_engine.errors import first_line
from clamp2_engine.workers import Outcome, run_tasks, without_internals

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


def _convert(task: tuple[str, str]) -> str:
    """Model input from an uploaded file (in a worker process)."""
    from clamp2_engine.music.inputs import music_query_input

    return music_query_input(Path(task[0]), timeout=None)[1]  # this worker is the time limit


async def music_input(file: UploadFile, request: Request | None, timeout: float) -> str:
    """Model input (interleaved ABC or MTF) from an uploaded score, MIDI or .mtf file, converted in a
    worker process with a time limit below the request's and a memory limit; 422 with the reason when it
    is not music this engine reads or takes too long. The worker is killed as soon as the request ends
    without it (the client went away, or the request's own time limit answered first)."""
    path = await save_upload(file)
    stop = threading.Event()
    svc = request.app.state.service if request is not None else None
    run = (
        svc.in_music_pool(_convert_in_worker, path, timeout, stop)
        if svc
        else asyncio.to_thread(_convert_in_worker, path, timeout, stop)
    )
    converting = asyncio.ensure_future(run)
    # the body is read: the next message is the client leaving (or the request's limit answering first)
    leaving = asyncio.ensure_future(request.receive()) if request is not None else None
    try:
        await asyncio.wait({converting, leaving} - {None}, return_when=asyncio.FIRST_COMPLETED)
        if not converting.done():
            stop.set()
            raise HTTPException(499, "the client closed the request")
        outcome = converting.result()
    finally:
        stop.set()  # also when this request is cancelled
        if leaving is not None:
            leaving.cancel()
        path.unlink(missing_ok=True)
    if outcome is None or not outcome.ok and outcome.error.startswith(("timed out", "worker died")):
        if request is not None:  # a conversion killed (time or memory limit, or its request ended)
            request.app.state.service.metrics.conversions_given_up.inc()
    if outcome is None:
        raise HTTPException(499, "the client closed the request")
    if not outcome.ok:
        raise HTTPException(422, plain(outcome.error, timeout).replace(path.name, file.filename or "upload"))
    return outcome.result


def _convert_in_worker(path: Path, timeout: float, stop: threading.Event) -> Outcome | None:
    """One conversion in a fresh worker; ``None`` when ``stop`` ended it."""
    from clamp2_engine.music.convert.batch import PRELOAD, quiet_worker  # quiet, memory capped

    outcomes = list(run_tasks(_convert, [(str(path), "")], 1, timeout, quiet_worker, PRELOAD, stop))
    return outcomes[0] if outcomes else None


def plain(error: str, timeout: float) -> str:
    """An upload's conversion error for its client, the limits said in words."""
    text = without_internals(error)
    if text.startswith("timed out after"):
        return f"the upload could not be converted within {timeout:g} s"
    if text.startswith("worker died") or "MemoryError" in error:
        return "the upload could not be converted within the server's memory limit"
    return first_line(ValueError(text), 300)
