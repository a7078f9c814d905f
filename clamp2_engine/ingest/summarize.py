"""Multilingual summaries of piece metadata from any OpenAI-compatible chat model (reference section 6).

``summarize_items`` asks for an English summary and one in a language chosen deterministically from the
item and the seed, with a bounded number of requests in flight, its own retry policy (exponential
backoff with jitter on 429, 408/409, 5xx, timeouts and connection errors; ``Retry-After`` honoured and
shared by all workers) and resumable, crash-safe output: every item ends once either in OUT or in
``OUT.errors.jsonl``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clamp2_engine.ingest.llm_prompt import LANGUAGES, resolve_languages
from clamp2_engine.ingest.summary_items import (  # noqa: F401 - re-exported: the module's API
    FINAL_KINDS,
    LOAD_ERROR_KEY,
    SOURCE_KEY,
    STAGE,
    SummarizeError,
    SummaryReport,
    has_information,
    item_identity,
    metadata_digest,
    metadata_of,
    output_record,
)
from clamp2_engine.ingest.summary_store import JsonlAppender, prune_jsonl, read_output
from clamp2_engine.jsonl import JsonLineError, iter_jsonl, parse_object
from clamp2_engine.paths import iter_files
from clamp2_engine.runlog import ErrorLog, describe_error

NO_KEY = "sk-no-key"


def errors_path_for(out_path: str | os.PathLike) -> Path:
    """``items.jsonl`` -> ``items.errors.jsonl`` beside it."""
    out = Path(out_path)
    stem = out.stem if out.suffix == ".jsonl" else out.name
    return out.with_name(f"{stem}.errors.jsonl")


def load_items(src: str | os.PathLike) -> list[dict[str, Any]]:
    """Items from a folder of per-piece ``.json`` files (walked recursively, sorted) or a ``.jsonl``.

    Each item carries its origin under ``"__source__"``; a file or line that is not a JSON object
    becomes ``{"__source__": ..., "__error__": reason}`` so that it is reported, not lost.
    """
    src_p = Path(src)
    items: list[dict[str, Any]] = []
    if src_p.is_file() and src_p.suffix.lower() == ".jsonl":
        for n, obj, reason in iter_jsonl(src_p):
            source = f"{src_p.name}:{n}"
            items.append(
                {**obj, SOURCE_KEY: source}
                if obj is not None
                else {SOURCE_KEY: source, LOAD_ERROR_KEY: reason}
            )
        return items

    def rejected(f: Path, reason: str) -> None:
        rel = f.name if src_p.is_file() else f.relative_to(src_p).as_posix()
        items.append({SOURCE_KEY: rel, LOAD_ERROR_KEY: reason})

    for f in iter_files(src_p, {".json"}, rejected=rejected):
        rel = f.name if src_p.is_file() else f.relative_to(src_p).as_posix()
        try:
            items.append(_load_one(f.read_bytes(), rel))
        except OSError as exc:
            items.append({SOURCE_KEY: rel, LOAD_ERROR_KEY: describe_error(exc)})
    return items


def _load_one(text: bytes, source: str) -> dict[str, Any]:
    try:
        return {**parse_object(text), SOURCE_KEY: source}
    except JsonLineError as exc:
        return {SOURCE_KEY: source, LOAD_ERROR_KEY: str(exc)}


def pick_language(identity: str, seed: int, languages: tuple[str, ...] = LANGUAGES) -> str:
    """The non-English language for an item: a deterministic function of the seed and its identity."""
    digest = hashlib.sha256(f"{seed}\x00{identity}".encode()).digest()
    return languages[int.from_bytes(digest[:8], "big") % len(languages)]


def fill_summaries(
    items: list[dict[str, Any]], out_path: str | os.PathLike, **kwargs: Any
) -> tuple[list[dict[str, Any]], SummaryReport | None]:
    """``items`` with ``summary_en`` / ``summary_nen`` filled from the LLM: the items without a summary are
    summarized into ``out_path`` (:func:`summarize_items` with ``kwargs``; resumable), then every item that
    has one there gets it. Items with a summary of their own keep it. Returns the items and the report
    (``None`` when nothing needed asking)."""
    out = Path(out_path)
    todo = [i for i in items if LOAD_ERROR_KEY not in i and not i.get("summary_en")]
    report = summarize_items(todo, out, **kwargs) if todo else None
    done = {item_identity(r): r for r in (read_output(out)[0] if out.exists() else [])}
    merged = []
    for item in items:
        rec = done.get(item_identity(item)) if LOAD_ERROR_KEY not in item else None
        if rec and not item.get("summary_en"):
            item = {**item, "summary_en": rec.get("summary_en"), "summary_nen": rec.get("summary_nen")}
        merged.append(item)
    return merged, report


def summarize_items(
    items: Iterable[dict[str, Any]],
    out_path: str | os.PathLike,
    *,
    base_url: str,
    model: str,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    seed: int = 0,
    languages: str | list[str] | None = None,
    max_retries: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
    answer_retries: int = 1,
    retry_none: bool = False,
    backoff_base: float = 1.0,
    backoff_max: float = 60.0,
) -> SummaryReport:
    """Summarize ``items`` into ``out_path`` (JSONL, appended), skipping those already there.

    ``answer_retries`` re-asks an item whose answer is invalid (not JSON, wrong shape or language);
    ``None`` answers are final and, unless ``retry_none``, not asked again on a re-run.
    Raises :class:`SummarizeError` when the run cannot go on (401/403/404, server unreachable).
    """
    from clamp2_engine.ingest.summarize_run import Settings, run_pending

    if concurrency < 1 or max_retries < 0 or answer_retries < 0 or timeout <= 0:
        raise ValueError("concurrency >= 1, max_retries >= 0, answer_retries >= 0 and timeout > 0 required")
    langs = resolve_languages(languages)
    out = Path(out_path)
    report = SummaryReport(out, errors_path_for(out))
    started = time.perf_counter()
    try:
        writer = JsonlAppender(out)
    except OSError as exc:
        raise SummarizeError(str(exc)) from exc
    with writer:
        done_ids = {item_identity(rec) for rec in writer.read_existing()}
        previous_final = _final_errors(report.errors_path) if not retry_none else {}
        pending: list[tuple[dict[str, Any], str, str]] = []
        seen: set[str] = set()
        for item in items:
            report.total += 1
            ident = item_identity(item)
            if ident in done_ids or ident in seen or previous_final.get(ident, "") == metadata_digest(item):
                report.skipped += 1
                continue
            seen.add(ident)
            pending.append((item, ident, pick_language(ident, seed, langs)))
        # failures of earlier runs for items tried again now (or done meanwhile) leave the errors file
        sources = {str(item[SOURCE_KEY]) for item, _, _ in pending if SOURCE_KEY in item}
        prune_jsonl(
            report.errors_path,
            lambda r: (
                r.get("identity") in seen
                or r.get("identity") in done_ids
                or (str(r.get("identity")).startswith("source:") and r.get("source") in sources)
            ),
        )
        errors = ErrorLog(report.errors_path)
        key = os.environ.get(api_key_env) or NO_KEY
        settings = Settings(
            base_url=base_url,
            model=model,
            api_key=key,
            concurrency=concurrency,
            max_retries=max_retries,
            answer_retries=answer_retries,
            timeout=timeout,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            progress=progress,
        )
        try:
            _run_sync(run_pending(pending, settings, writer, errors, report))
        finally:
            report.seconds = time.perf_counter() - started
    return report


def _final_errors(path: Path) -> dict[str, str]:
    """identity -> metadata digest of the items an earlier run recorded with a final answer."""
    records, _ = read_output(path)
    return {
        r["identity"]: str(r.get("metadata_sha256"))
        for r in records
        if r.get("kind") in FINAL_KINDS and isinstance(r.get("identity"), str)
    }


def _run_sync(coro: Any) -> Any:
    """``asyncio.run`` that also works when the caller already runs an event loop (in a thread then)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
