"""Small helpers several test modules share."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def save_feature(path: Path, content: np.ndarray | bytes) -> Path:
    """Write a feature file: an array as ``.npy``, or raw bytes (a corrupt file)."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    return path


@contextmanager
def sigkilled(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Run the ``with`` body against ``proc``, then SIGKILL it and check it died of that; never leaves it
    running, even when the body fails."""
    try:
        yield proc
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()


class Server:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread; by default, once it says it is ready."""

    def __init__(self, app, ready: bool = True, limit: float = 120.0):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="info"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.deadline = time.monotonic() + limit
        while not self.server.started:
            assert time.monotonic() < self.deadline, "the server did not start in time"
            assert self.thread.is_alive(), "the server's thread ended"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"
        if ready:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Until ``/healthz`` says ok (it answers 503 while the model loads)."""
        import httpx

        while httpx.get(f"{self.url}/healthz", timeout=30).status_code == 503:
            assert time.monotonic() < self.deadline, "the server never became ready"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
