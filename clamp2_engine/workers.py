"""A process pool whose workers can be killed: one task per worker at a time, a wall-clock limit per
task, and a fresh worker in place of one that hung or died. No shell, no threads.

Workers start through multiprocessing's forkserver (spawn where there is none), so, as with any
multiprocessing pool, a script that calls this must guard its entry point with
``if __name__ == "__main__":``; a worker that cannot even start stops the run with a clear error.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from clamp2_engine.errors import first_line

READY = "ready"
STOP_POLL = 0.1  # seconds between looks at ``stop``


@dataclass
class Outcome:
    """What became of one task: ``result`` when ``ok``, else ``error`` (a one-line reason)."""

    task: Any
    ok: bool
    result: Any = None
    error: str = ""
    seconds: float = 0.0


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {os.path.basename(last[0].filename)}:{last[0].lineno})" if last else ""
    text = first_line(exc, default="")
    return f"{type(exc).__name__}: {text}{where}" if text else type(exc).__name__ + where


def without_internals(error: str) -> str:
    """An :class:`Outcome`'s error as a sentence for someone outside: no exception class, no file and
    line (what :func:`_describe` adds)."""
    text = re.sub(r"\s*\(at [^()]*:\d+\)", "", error)
    return re.sub(r"\b[A-Z]\w*(Error|Exception|Warning): ", "", text)


def _worker_loop(fn: Callable[[Any], Any], conn: Connection, initializer: Callable[[], None] | None) -> None:
    if initializer is not None:
        initializer()
    conn.send(READY)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            conn.send((True, fn(task)))
        except BaseException as exc:  # report everything, even SystemExit from a library
            conn.send((False, _describe(exc)))


class _Worker:
    def __init__(self, ctx, fn, initializer):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_loop, args=(fn, child, initializer), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.task: Any = None
        self.started = 0.0

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


def _context(preload: Sequence[str]):
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(preload))  # effective when the fork server is not running yet
        return ctx
    return multiprocessing.get_context("spawn")


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    jobs: int = 1,
    timeout: float | None = None,
    initializer: Callable[[], None] | None = None,
    preload: Sequence[str] = (),
    stop: threading.Event | None = None,
) -> Iterator[Outcome]:
    """Run ``fn(task)`` in ``jobs`` worker processes, yielding an :class:`Outcome` per task as each
    finishes (not in order). A task running longer than ``timeout`` seconds has its worker killed and
    yields a timeout error; a worker that dies (crash, out of memory) yields an error too. ``fn``,
    ``initializer`` and the tasks must be picklable (module-level functions). ``preload`` names modules
    the fork server imports once for all workers. Setting ``stop`` (from another thread) ends the run
    within 0.1 s, its workers killed (a request that was abandoned)."""
    ctx = _context(preload)
    pending = iter(tasks)
    workers: list[_Worker] = []
    exhausted = False
    try:
        workers = [_Worker(ctx, fn, initializer) for _ in range(max(1, jobs))]
        while True:
            if stop is not None and stop.is_set():
                return
            for w in workers:  # hand out work
                if w.ready and w.task is None and not exhausted:
                    try:
                        w.task = next(pending)
                    except StopIteration:
                        exhausted = True
                        break
                    w.started = time.monotonic()
                    w.conn.send(w.task)
            busy = [w for w in workers if w.task is not None]
            starting = [w for w in workers if not w.ready]
            if not busy and (exhausted or not starting):
                return
            now = time.monotonic()
            wait_for = (
                None
                if timeout is None or not busy
                else max(0.0, min(w.started + timeout - now for w in busy))
            )
            if stop is not None:
                wait_for = STOP_POLL if wait_for is None else min(wait_for, STOP_POLL)
            watched = busy + starting
            ready = set(wait([w.conn for w in watched] + [w.proc.sentinel for w in watched], wait_for))
            for i, w in enumerate(workers):
                if not w.ready:
                    if w.conn in ready or w.proc.sentinel in ready:
                        try:
                            w.ready = w.conn.recv() == READY
                        except (EOFError, OSError):
                            w.ready = False
                        if not w.ready:
                            raise RuntimeError(
                                f"a worker process could not start (exit code {w.proc.exitcode}); a script "
                                "that converts in parallel must guard its code with if __name__ == '__main__':"
                            )
                    continue
                if w.task is None:
                    continue
                elapsed = time.monotonic() - w.started
                if w.conn in ready or w.proc.sentinel in ready:
                    try:
                        ok, value = w.conn.recv()
                    except (EOFError, OSError):
                        w.proc.join(5)
                        task, code = w.task, w.proc.exitcode
                        w.kill()
                        workers[i] = _Worker(ctx, fn, initializer)
                        yield Outcome(task, False, error=f"worker died (exit code {code})", seconds=elapsed)
                        continue
                    task, w.task = w.task, None
                    yield Outcome(task, ok, value if ok else None, "" if ok else value, elapsed)
                elif timeout is not None and elapsed >= timeout:
                    task = w.task
                    w.kill()
                    workers[i] = _Worker(ctx, fn, initializer)
                    yield Outcome(task, False, error=f"timed out after {timeout:g} s", seconds=elapsed)
    finally:
        for w in workers:
            try:
                if w.ready and w.task is None and w.proc.is_alive():
                    w.conn.send(None)
            except OSError:
                pass
        for w in workers:
            w.proc.join(1 if w.ready and w.task is None else 0)
            w.kill()
