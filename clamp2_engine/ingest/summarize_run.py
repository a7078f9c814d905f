"""The request loop behind :func:`ingest.summarize.summarize_items`: bounded workers on ``AsyncOpenAI``
(its own retries off), the retry policy, answer validation, and the progress bar."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import openai
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from clamp2_engine.ingest.llm_prompt import build_messages, parse_answer
from clamp2_engine.ingest.summary_items import (
    LOAD_ERROR_KEY,
    SOURCE_KEY,
    STAGE,
    SummarizeError,
    SummaryReport,
    has_information,
    metadata_digest,
    metadata_of,
    output_record,
)
from clamp2_engine.ingest.summary_store import JsonlAppender
from clamp2_engine.runlog import ErrorLog, console, describe_error

RETRY_STATUS = {408, 409, 429}  # and every 5xx
FATAL_STATUS = {
    401: "the API key was refused",
    403: "access denied",
    404: "not found: check the API root (most servers end in /v1) and the model name",
}
MAX_WAIT = 900.0  # the longest single wait, even when Retry-After asks for more
EXCERPT = 300


@dataclass(frozen=True)
class Settings:
    base_url: str
    model: str
    api_key: str = field(repr=False)  # never in a repr or a log
    concurrency: int = 8
    max_retries: int = 5
    answer_retries: int = 1
    timeout: float = 60.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    progress: bool = True


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if any."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError, IndexError):
            continue
    return None


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter for retry ``attempt`` (1, 2, ...): uniform in [d/2, d] where
    d = min(cap, base * 2**(attempt-1))."""
    d = min(cap, base * 2 ** (attempt - 1))
    return d / 2 + (rng or random).uniform(0, d / 2)


@dataclass
class _Outcome:
    summaries: dict[str, Any] | None = None
    kind: str = ""
    reason: str = ""
    excerpt: str | None = None
    attempts: int = 0


class _Runner:
    def __init__(self, s: Settings, writer: JsonlAppender, errors: ErrorLog, report: SummaryReport):
        self.s, self.writer, self.errors, self.report = s, writer, errors, report
        self.client = openai.AsyncOpenAI(
            base_url=s.base_url, api_key=s.api_key, max_retries=0, timeout=s.timeout
        )
        self.not_before = 0.0  # shared pause after a 429
        self.retrying = 0
        self.streak = 0  # items in a row that failed on transport errors, with no answer between
        self.abort_after = max(8, 2 * s.concurrency)
        self.rng = random.Random()
        self._progress: Progress | None = None
        self._task: Any = None

    def redact(self, text: str) -> str:
        key = self.s.api_key
        return text.replace(key, "***") if key and len(key) >= 4 else text

    def leaks_key(self, text: str) -> bool:
        key = self.s.api_key
        return bool(key) and len(key) >= 4 and key in text

    # -- bookkeeping ------------------------------------------------------------------------------
    def _refresh(self, advance: int = 0) -> None:
        if self._progress is not None:
            r = self.report
            stats = (
                f"done {r.done} [yellow]none {r.none}[/] [red]failed {r.failed}[/] "
                f"retrying {self.retrying} tokens {r.tokens:,}"
            )
            self._progress.update(self._task, advance=advance, stats=stats)

    def _fail(self, item: dict[str, Any], ident: str, lang: str, o: _Outcome) -> None:
        extra = {
            "identity": ident,
            "kind": o.kind,
            "language": lang,
            "attempts": o.attempts,
            "metadata_sha256": metadata_digest(item),
        }
        if o.excerpt:
            extra["excerpt"] = self.redact(o.excerpt[:EXCERPT])
        self.errors.add(_source_of(item, ident), STAGE, self.redact(o.reason), **extra)
        if o.kind in ("none", "empty"):
            self.report.none += 1
        else:
            self.report.failed += 1
        self.report.reasons[o.kind] += 1

    # -- the loop ---------------------------------------------------------------------------------
    async def run(self, pending: list[tuple[dict[str, Any], str, str]]) -> None:
        it = iter(pending)
        n = min(self.s.concurrency, len(pending))
        if self.s.progress:
            self._progress = Progress(
                BarColumn(bar_width=16),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._task = self._progress.add_task("summarize", total=len(pending), stats="")
            self._progress.start()
        tasks = [asyncio.create_task(self._worker(it)) for _ in range(n)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.client.close()
            if self._progress is not None:
                self._progress.stop()

    async def _worker(self, it: Iterator[tuple[dict[str, Any], str, str]]) -> None:
        for item, ident, lang in it:
            await self._process(item, ident, lang)
            self._refresh(advance=1)

    async def _process(self, item: dict[str, Any], ident: str, lang: str) -> None:
        if LOAD_ERROR_KEY in item:
            return self._fail(item, ident, lang, _Outcome(kind="load", reason=str(item[LOAD_ERROR_KEY])))
        meta = metadata_of(item)
        if not has_information(meta):
            reason = "too little information: no metadata besides filepaths (not sent)"
            return self._fail(item, ident, lang, _Outcome(kind="empty", reason=reason))
        o = await self._ask(build_messages(meta, lang), lang)
        if o.summaries is None:
            self._fail(item, ident, lang, o)
            if self.streak >= self.abort_after:
                raise SummarizeError(
                    f"{self.streak} items in a row failed ({o.reason}); "
                    f"is the server at {self.s.base_url} up?"
                )
            return
        self.writer.write(output_record(item, o.summaries))
        self.report.done += 1

    async def _ask(self, messages: list[dict[str, str]], lang: str) -> _Outcome:
        s, transport, invalid, attempts = self.s, 0, 0, 0
        while True:
            wait = self.not_before - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            attempts += 1
            hint = None
            try:  # --timeout is a deadline for the whole request, however slowly the body arrives
                create = self.client.chat.completions.create(model=s.model, messages=messages)
                resp = await _within(create, s.timeout)
            except (asyncio.TimeoutError, TimeoutError):
                kind, reason = "timeout", f"no complete answer within {s.timeout:g} s"
            except openai.APIStatusError as exc:
                code = exc.status_code
                if code in FATAL_STATUS:
                    raise SummarizeError(
                        f"HTTP {code} from {s.base_url}: {FATAL_STATUS[code]} "
                        f"({self.redact(describe_error(exc))[:200]})"
                    ) from None
                kind, reason = f"http_{code}", self.redact(describe_error(exc))
                if code not in RETRY_STATUS and code < 500:
                    self.streak = 0
                    return _Outcome(kind=kind, reason=reason, attempts=attempts)
                hint = retry_after_seconds(exc.response.headers)
            except openai.APITimeoutError:
                kind, reason = "timeout", f"no answer within {s.timeout:g} s"
            except openai.APIConnectionError as exc:
                _stop_when_cancelled()  # Ctrl-C: a cancelled request may surface as a connection error
                kind, reason = "connection", self.redact(describe_error(exc.__cause__ or exc))
            except openai.APIError as exc:  # a 2xx response the client could not read
                self.streak = 0
                return _Outcome(
                    kind="bad_response", reason=self.redact(describe_error(exc)), attempts=attempts
                )
            else:
                self.streak = 0
                self._count_usage(resp)
                try:
                    text = answer_text(resp)
                except ValueError as exc:  # a 200 that is no chat completion: an invalid answer
                    kind, reason, text = "bad_response", str(exc), None
                    ans = None
                else:
                    ans = parse_answer(text, lang)
                    if ans.ok and self.leaks_key(text):
                        ans = None
                        kind, reason, text = (
                            "key_in_answer",
                            "the answer contains the API key (not written)",
                            None,
                        )
                if ans is not None and ans.ok:
                    return _Outcome(summaries=ans.summaries, attempts=attempts)
                if ans is not None:
                    kind, reason = ans.kind, ans.reason
                if kind == "none" or invalid >= s.answer_retries:
                    return _Outcome(kind=kind, reason=reason, excerpt=text, attempts=attempts)
                invalid += 1
                self.report.retries += 1
                continue
            # a transient failure: back off and try again, or give up on this item
            if transport >= s.max_retries:
                self.streak += 1
                return _Outcome(kind=kind, reason=f"{reason} (after {attempts} attempts)", attempts=attempts)
            transport += 1
            self.report.retries += 1
            if hint is not None:
                delay = min(MAX_WAIT, hint * (1 + self.rng.uniform(0, 0.1)))
            else:
                delay = backoff_delay(transport, s.backoff_base, s.backoff_max, self.rng)
            if kind == "http_429":
                self.not_before = max(self.not_before, time.monotonic() + delay)
            self.retrying += 1
            self._refresh()
            try:
                await asyncio.sleep(delay)
            finally:
                self.retrying -= 1

    def _count_usage(self, resp: Any) -> None:
        usage = getattr(resp, "usage", None)
        if usage is None:
            return
        p, c = getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0
        self.report.prompt_tokens += p
        self.report.completion_tokens += c
        self.report.tokens += getattr(usage, "total_tokens", 0) or p + c


def answer_text(resp: Any) -> str:
    """The text of a chat completion's first choice; ``ValueError`` for a reply that is none."""
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        got = "a string" if isinstance(resp, str) else f"choices of type {type(choices).__name__}"
        raise ValueError(f"the reply is no chat completion ({got})")
    content = getattr(getattr(choices[0], "message", None), "content", None)
    if not isinstance(content, str):
        raise ValueError(f"the reply's message content is {type(content).__name__}, not text")
    return content


def _source_of(item: dict[str, Any], ident: str) -> str:
    """What an errors line names: the metadata file (or JSONL line), else the first file path."""
    if item.get(SOURCE_KEY):
        return str(item[SOURCE_KEY])
    fps = item.get("filepaths")
    first = fps if isinstance(fps, str) else fps[0] if isinstance(fps, list) and fps else None
    return str(first) if first else ident


async def run_pending(
    pending: list[tuple[dict[str, Any], str, str]],
    settings: Settings,
    writer: JsonlAppender,
    errors: ErrorLog,
    report: SummaryReport,
) -> None:
    """Summarize ``pending`` (item, identity, language) into ``writer`` / ``errors``, updating ``report``."""
    await _Runner(settings, writer, errors, report).run(pending)


async def _within(awaitable: Any, seconds: float) -> Any:
    """``await awaitable`` with a deadline: ``asyncio.timeout`` where there is one (Python 3.11+; unlike
    ``wait_for`` there, it never swallows a cancellation that meets the request's end), else ``wait_for``."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def _stop_when_cancelled() -> None:
    """Raise :class:`asyncio.CancelledError` when this task is being cancelled (Ctrl-C), so that no
    library turning the cancellation into an error makes the run retry instead of stopping."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    if cancelling is not None and cancelling():
        raise asyncio.CancelledError
