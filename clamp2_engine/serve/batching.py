"""Cross-request micro-batching with fair turns: texts from concurrent requests are encoded together, and
a large request is cut into passes that take turns with the others.

A request's texts join a queue; each forward pass is formed from what is waiting, at most ``max_batch``
texts and its fair share: the texts waiting and those being encoded, over the workers, so that passes
stay even and every core has work (32 clients on 2 workers: at most 16; clients still in their search
are not counted, so at steady state passes average about 11). Until a pass has its share it waits for
more while they keep coming, each within a gap of the last (``max_wait``, or for a slow encoder
``GAP_SHARE`` of a pass's time): the clients answered by one pass come back close together, and so go
out together. Requests not yet started go first, each with its first text, then the
ones already part-encoded: a request's further texts are cut to about ``pass_seconds`` of work (the
worker learns the encoder's seconds per estimated token from the passes it runs), so a search waits for
at most one pass of a large embed request. The encode threads run at a lower priority than the threads
that answer requests. ``max_wait=0`` turns cross-request batching off (each pass serves one request's
texts).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

Encode = Callable[[list[str]], np.ndarray]
FIRST_BUDGET = 1024.0  # tokens in a pass before the encoder's speed is known
ENCODE_NICE = 10  # the encode threads' niceness: below the threads that answer requests
GAP_SHARE = 0.05  # a gathering pass waits this share of a pass's time for the next text (max_wait at least)
GATHER_GAPS = 8  # ... and this many such gaps at most in all


def tokens(text: str) -> int:
    """A cheap estimate of a text's tokens (about 3.5 UTF-8 bytes per token, as XLM-R's are)."""
    return 2 + len(text.encode("utf-8", "replace")) * 2 // 7


def lower_priority() -> None:
    """Run the calling thread below the others (Linux: a thread's own nice value), so that answering
    requests and reading the next ones never waits behind a forward pass for a core."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ENCODE_NICE)
    except (AttributeError, OSError):  # no per-thread priority here: the scheduler shares evenly
        pass


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future
    done: int = 0  # texts given to a pass so far
    encoded: int = 0  # texts whose vectors came back
    parts: dict[int, np.ndarray] = field(default_factory=dict)  # first text's index -> its pass's vectors

    def receive(self, start: int, vectors: np.ndarray) -> None:
        """One pass's vectors for texts ``start ..``; the request is answered once all are back."""
        self.parts[start] = vectors
        self.encoded += len(vectors)
        if self.encoded == len(self.texts) and not self.future.done():
            self.future.set_result(np.concatenate([self.parts[k] for k in sorted(self.parts)]))


class MicroBatcher:
    """``await batcher.encode(texts)`` -> one vector per text; ``workers`` passes run at once, each in a
    thread of its own (with single-threaded encoders, one per core keeps every core busy)."""

    def __init__(
        self,
        encode: Encode,
        max_batch: int = 64,
        max_wait: float = 0.004,
        on_batch: Callable[[int], None] | None = None,
        pass_seconds: float = 0.25,
        workers: int = 1,
    ):
        self.encode_fn, self.max_batch, self.max_wait, self.on_batch = encode, max_batch, max_wait, on_batch
        self.pass_seconds, self.workers = pass_seconds, max(1, workers)
        self.seconds_per_token: float | None = None  # learnt from the passes run
        self.queue: asyncio.Queue[_Job] | None = None
        self.executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="encode", initializer=lower_priority
        )
        self.worker: asyncio.Task | None = None
        self.batches = 0  # forward passes run (for the benchmark and the health check)
        self.in_flight = 0  # texts in the passes running now
        self.pass_time = 0.0  # seconds a pass takes (a moving average)

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if self.worker is None:
            self.queue = asyncio.Queue()
            self.worker = loop.create_task(self._run())
        job = _Job(list(texts), loop.create_future())
        assert self.queue is not None
        await self.queue.put(job)
        return await job.future  # a request that ends early leaves its future cancelled: it is dropped

    def budget(self) -> float:
        """Tokens one pass may hold (``FIRST_BUDGET`` until a pass has been timed)."""
        if self.seconds_per_token is None:
            return FIRST_BUDGET
        return self.pass_seconds / self.seconds_per_token

    def _take(self, waiting: list[_Job]) -> list[tuple[_Job, int]]:
        """This pass's share of each waiting job: new jobs first (each with its first text whatever the
        budget), then part-encoded ones; further texts of a job within the budget; at most its fair
        :meth:`share` (so that passes stay even and every core gets work); one job only without
        cross-request batching."""
        order = [j for j in waiting if j.done == 0] + [j for j in waiting if j.done > 0]
        pending = sum(len(j.texts) - j.done for j in order)
        cap = self.share(pending)
        budget, count, shares = self.budget(), 0, []
        for job in order:
            take = 0
            while job.done + take < len(job.texts) and count < cap:
                cost = tokens(job.texts[job.done + take])
                if take and cost > budget:
                    break
                budget, count, take = budget - cost, count + 1, take + 1
            if take:
                shares.append((job, take))
            if count >= cap or (take and job.done + take < len(job.texts)):
                break
            if take and self.max_wait <= 0:
                break
        return shares

    def share(self, pending: int) -> int:
        """A pass's fair share: the texts waiting and those being encoded, over the workers."""
        return min(self.max_batch, max(1, -(-(pending + self.in_flight) // self.workers)))

    async def _gather(self, waiting: list[_Job]) -> None:
        """Move queued jobs to ``waiting``: block for one when there is none, then, until the pass has
        its fair share, wait for more while they keep coming (each within a gap of the last: ``max_wait``,
        or for a slow encoder a share of a pass's time; ``GATHER_GAPS`` gaps at most in all)."""
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        if not waiting:
            waiting.append(await self.queue.get())
        gap = max(self.max_wait, GAP_SHARE * self.pass_time)
        last_call = loop.time() + GATHER_GAPS * gap
        pending = sum(len(j.texts) - j.done for j in waiting)
        while self.max_wait > 0 and pending < self.share(pending):
            wait = min(gap, last_call - loop.time())
            try:
                job = self.queue.get_nowait() if wait <= 0 else await asyncio.wait_for(self.queue.get(), wait)
            except (asyncio.QueueEmpty, TimeoutError):
                break
            waiting.append(job)
            pending += len(job.texts)
        while not self.queue.empty():
            waiting.append(self.queue.get_nowait())

    async def _run(self) -> None:
        waiting: list[_Job] = []
        running: set[asyncio.Task] = set()
        while True:
            running = {t for t in running if not t.done()}
            if len(running) >= self.workers:  # every worker busy: the next pass forms when one is free
                _done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            await self._gather(waiting)
            waiting[:] = [j for j in waiting if not j.future.done() and j.done < len(j.texts)]
            if not waiting:
                continue
            shares = [(job, job.done, n) for job, n in self._take(waiting)]
            for job, start, n in shares:
                job.done = start + n  # given to this pass: the next pass goes on from here
            self.in_flight += sum(n for _job, _start, n in shares)
            running.add(asyncio.ensure_future(self._pass(shares)))
            waiting[:] = [j for j in waiting if j.done < len(j.texts)]

    async def _pass(self, shares: list[tuple[_Job, int, int]]) -> None:
        """One forward pass over its shares of the jobs; each job gets its vectors (or the error)."""
        texts = [t for job, start, n in shares for t in job.texts[start : start + n]]
        if self.on_batch:
            self.on_batch(len(texts))
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            vectors = np.atleast_2d(await loop.run_in_executor(self.executor, self.encode_fn, texts))
        except Exception as exc:  # every request in this pass gets the error
            for job, _start, _n in shares:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self.in_flight -= len(texts)
        self.batches += 1
        took = time.perf_counter() - started
        self.pass_time = took if not self.pass_time else 0.7 * self.pass_time + 0.3 * took
        per_token = took / max(1, sum(tokens(t) for t in texts))
        self.seconds_per_token = (
            per_token if self.seconds_per_token is None else 0.7 * self.seconds_per_token + 0.3 * per_token
        )
        offset = 0
        for job, start, n in shares:
            job.receive(start, vectors[offset : offset + n])
            offset += n

    def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
