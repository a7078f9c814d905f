"""Small helpers several test modules share."""

from __future__ import annotations

import os
import signal
import subprocess
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
