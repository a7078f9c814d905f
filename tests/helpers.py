"""Small helpers several test modules share."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from clamp2_engine.identity import ModelIdentity
from clamp2_engine.store import MEMORY, Point, Store, StoreSpec, point_id


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


def copy_sparse(src: str, dst: str) -> str:
    """Copy a file keeping its holes: Qdrant Edge's storage files are mostly unwritten pages, and a plain
    copy fills them (a 3 MB test collection would take 1.9 GB)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
            except OSError:  # no data after offset
                break
            end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
            fin.seek(start)
            fout.seek(start)
            left = end - start
            while left:
                chunk = fin.read(min(left, 1 << 20))
                fout.write(chunk)
                left -= len(chunk)
            offset = end
        fout.truncate(size)
    shutil.copystat(src, dst)
    return dst


def copy_store(src: Path, dst: Path) -> Path:
    """A copy of an embedded store (or one collection's folder) that keeps its files sparse."""
    return Path(shutil.copytree(src, dst, copy_function=copy_sparse))


class Server:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread; by default, once it says it is ready."""

    def __init__(
        self, app, ready: bool = True, limit: float = 120.0, header_timeout: float = 10.0, http: str = "auto"
    ):
        import uvicorn

        from clamp2_engine.serve.server import server_config

        self.server = uvicorn.Server(server_config(app, port=0, header_timeout=header_timeout, http=http))
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


def ingest_serve_corpus(root: Path, parity_dir: Path) -> Path:
    """The parity fixture's abc, xml, midi and mtf pieces ingested through the CLI into collection
    ``music`` of an embedded store under ``root`` (returned)."""
    import shutil

    import pytest
    from click.testing import CliRunner
    from index_helpers import model_args

    from clamp2_engine.cli import main

    pieces = root / "pieces"
    for sub in ("abc", "xml", "midi", "mtf"):
        shutil.copytree(parity_dir / "inputs" / sub, pieces / sub)
    store = root / "edge"
    args = [
        "ingest",
        str(pieces),
        "-c",
        "music",
        "--qdrant-path",
        str(store),
        "--no-render",
        "--jobs",
        "1",
        "-q",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAMP2_HOME", str(root / "home"))
        res = CliRunner().invoke(
            main, args + [str(a) for a in model_args(parity_dir)], catch_exceptions=False
        )
    assert res.exit_code == 0, res.output
    return store


# --- collections without a model (tiny vectors) -----------------------------------------------------

DIM = 8


def identity(sha: str = "a" * 64, dim: int = DIM, kind: str = "clamp2") -> ModelIdentity:
    return ModelIdentity(
        name="test.pth",
        kind=kind,
        checkpoint_sha256=sha,
        embed_dim=dim,
        music_hidden_size=dim,
        text_hidden_size=dim,
        patch_size=64,
        patch_length=512,
        max_text_length=128,
        text_model="text_model",
    )


def spec_for(engine: str, tmp_path: Path, name: str = "store") -> StoreSpec:
    """The embedded engine (Qdrant Edge) or the server path (qdrant-client's in-memory stand-in)."""
    return StoreSpec(path=tmp_path / name) if engine == "edge" else StoreSpec(url=MEMORY)


def unit_vec(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def fill(store: Store, name: str = "c", n: int = 6):
    """n points: even ones have abc, odd ones mtf, every third a text vector."""
    coll = store.ensure(name, identity(), {"model": "/m.pth", "text_model": None})
    points = []
    for i in range(n):
        vecs = {"abc" if i % 2 == 0 else "mtf": unit_vec(i)}
        if i % 3 == 0:
            vecs["text"] = unit_vec(100 + i)
        payload = {
            "corpus": "k",
            "unit": f"u{i}",
            "unit_hash": "h",
            "unit_parts": 1,
            "title": f"t{i}",
            "composer": "Bach" if i < 3 else "Handel",
            "metadata": {"genres": ["Folk", "Jazz"] if i % 2 else ["Classical"], "year": 1700 + i},
        }
        points.append(Point(point_id(f"k:u{i}"), vecs, payload))
    coll.upsert(points)
    return coll


def dense_midi(notes: int) -> bytes:
    """A MIDI file of ``notes`` one-tick notes: small on disk, slow and large to convert."""
    track = b"\x01\x90\x3c\x40\x00\x80\x3c\x00" * notes + b"\x00\xff\x2f\x00"
    return b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0" + b"MTrk" + len(track).to_bytes(4, "big") + track


def readme_example(name: str) -> str:
    """The README's code block that follows ``<!-- example: NAME -->`` (run by the tests as written)."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w*\n(.*?)\n```", readme, re.S)
    assert found, f"the README has no example {name!r}"
    return found.group(1)


def raw(url: str, data: bytes, wait: float, closed: list[bool] | None = None) -> bytes:
    """Send ``data`` on a fresh connection, then read what the server says within ``wait`` seconds
    (``closed`` gets whether the server closed the connection before that)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(data)
        answer, ended = b"", True
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            ended = False
        if closed is not None:
            closed.append(ended)
        return answer
