"""Cross-request micro-batching: texts from concurrent requests are encoded together.

A request's texts join a queue; one worker takes everything queued (waiting up to ``max_wait`` seconds
for more once the first arrives, never past ``max_batch`` texts) and encodes it in a single forward
pass on a thread, so that 32 clients cost far fewer passes than 32 requests. ``max_wait=0`` turns
batching off: each request is encoded alone, one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

Encode = Callable[[list[str]], np.ndarray]


class MicroBatcher:
    """``await batcher.encode(texts)`` -> one vector per text; one encoding thread per batcher."""

    def __init__(
        self,
        encode: Encode,
        max_batch: int = 64,
        max_wait: float = 0.004,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.encode_fn, self.max_batch, self.max_wait, self.on_batch = encode, max_batch, max_wait, on_batch
        self.queue: asyncio.Queue[tuple[list[str], asyncio.Future]] | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
        self.worker: asyncio.Task | None = None
        self.batches = 0  # forward passes run (for the benchmark and the health check)

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self.worker is None:
            self.queue = asyncio.Queue()
            self.worker = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        assert self.queue is not None
        await self.queue.put((list(texts), future))
        return await future

    async def _run(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0][0])
            deadline = loop.time() + self.max_wait
            while size < self.max_batch and self.max_wait > 0:
                remaining = deadline - loop.time()
                try:
                    job = (
                        self.queue.get_nowait()
                        if remaining <= 0
                        else await asyncio.wait_for(self.queue.get(), remaining)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                jobs.append(job)
                size += len(job[0])
            texts = [t for batch, _f in jobs for t in batch]
            if self.on_batch:
                self.on_batch(len(texts))
            try:
                vectors = await loop.run_in_executor(self.executor, self.encode_fn, texts)
                self.batches += 1
            except Exception as exc:  # every waiting request gets the error
                for _batch, future in jobs:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for batch, future in jobs:
                if not future.done():
                    future.set_result(np.asarray(vectors[start : start + len(batch)]))
                start += len(batch)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
