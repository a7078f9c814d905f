"""What ``serve`` holds for its whole life: the store, each collection's query towers and text batcher,
the renderer, and the lookups the routes need. Framework-free, so that it can be tested and reused."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from clamp2_engine.errors import CollectionError, CollectionNotFoundError, StoreInUseError, first_line
from clamp2_engine.loading import LoadOptions
from clamp2_engine.paths import data_dir
from clamp2_engine.search import Plan, Query, Result, SearchSession
from clamp2_engine.search.models import Loader, load_tower
from clamp2_engine.search.session import query_threads
from clamp2_engine.serve.batching import MicroBatcher
from clamp2_engine.serve.metrics import Metrics
from clamp2_engine.serve.render import Renderer
from clamp2_engine.store import Collection, Store, StoreSpec
from clamp2_engine.store.pieces import PieceNotFound, get_piece, piece_file
from clamp2_engine.store.spec import MEMORY

FACET_FIELDS = ("composer", "genres")
RETRY_S = 2.0  # seconds between tries of a collection another process holds
log = logging.getLogger("clamp2_engine.serve")


@dataclass
class ServeConfig:
    """How ``serve`` runs; ``api_key`` is the key's value (read from the environment, never logged)."""

    store: StoreSpec
    collection: str
    model_options: LoadOptions = field(default_factory=LoadOptions)
    loader: Loader = load_tower
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    batch_wait: float = 0.004  # seconds a text batch waits for more requests; 0: no cross-request batching
    max_batch: int = 64
    max_body: int = 16 * 2**20
    request_timeout: float = 60.0
    body_timeout: float = 30.0  # seconds for a request's body to arrive (408 after)
    upload_timeout: float = (
        30.0  # seconds to convert an uploaded file: below request_timeout, so a 422 says why
    )
    cache_dir: Path | None = None
    corpus_roots: dict[str, str] = field(default_factory=dict)  # overrides the collection's record
    public_health: bool = True  # /healthz and /livez answer without the API key (for probes)
    mcp: bool = True  # the MCP tools at /mcp (when the mcp package is installed)
    # text passes run at once, each on $CLAMP2_QUERY_THREADS threads (default 1); None: cores / threads
    encode_workers: int | None = None
    public_url: str | None = None  # where clients reach the server (links in the MCP tool read_piece)
    # threads that wait on render and upload workers (each runs one worker process at a time)
    music_threads: int = field(default_factory=lambda: max(4, 2 * (os.cpu_count() or 1)))
    # threads one search of an embedded collection reads its segments with (0: Qdrant Edge's default):
    # the cores are shared across requests, not within one
    search_threads: int = 1
    # searches of the default collection run at once: a search costs about a fifteenth of a text query's
    # encoding, so one per 8 cores keeps up with the encode workers; more only contend for the GIL (their
    # Python: fusion, ids) with the encoders. None: that, at least one
    search_slots: int | None = None


class Service:
    """The served store and collections. Searches of the default collection, which stays open, run up to
    ``search_slots`` at once; other store calls are serialized by one lock (one process owns an embedded
    collection; its calls take milliseconds, and a sibling collection is let go after each)."""

    def __init__(self, config: ServeConfig):
        self.config = config
        # one setting for a query's threads everywhere: an ONNX session gets them when it loads
        options = config.model_options
        self.model_options = replace(options, threads=options.threads or query_threads())
        spec = config.store
        self.store = Store(replace(spec, search_threads=config.search_threads) if spec.is_local else spec)
        slots = config.search_slots or max(1, (os.cpu_count() or 1) // 8)
        # qdrant-client's in-memory stand-in (tests) is not made for calls from several threads
        self.search_slots = threading.BoundedSemaphore(1 if spec.url == MEMORY else slots)
        self.lock = threading.Lock()
        self.sessions: dict[str, SearchSession] = {}
        self.batchers: dict[str, MicroBatcher] = {}
        self.torch_threads: int | None = None  # torch's threads before the encode workers set theirs
        self.metrics = Metrics()
        self.renderer = Renderer(config.cache_dir or data_dir() / "cache" / "render", observe=self._rendered)
        # renders and uploads wait on worker processes: their own bounded pool, never the threads that
        # searches run on
        self.music_pool = ThreadPoolExecutor(config.music_threads, thread_name_prefix="clamp2-music")
        self.ready = False  # the default collection and its text tower are loaded
        self.failure: str | None = None  # why they could not be
        self.waiting: str | None = None  # why they are not yet (a collection in use elsewhere)
        self.stopping = threading.Event()

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()
        if self.torch_threads is not None:  # the process's own setting again (a server in a test, say)
            import torch

            torch.set_num_threads(self.torch_threads)
        self.music_pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    async def in_music_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the renders' and uploads' own threads."""
        return await asyncio.get_running_loop().run_in_executor(self.music_pool, partial(fn, *args))

    def locked(
        self, fn: Callable[..., Any], *args: Any, coll: Collection | None = None, **kwargs: Any
    ) -> Any:
        """``fn(*args, **kwargs)`` under the store lock (``coll``: released afterwards unless it is the
        default collection)."""
        with self.lock:
            try:
                return fn(*args, **kwargs)
            finally:
                if coll is not None:
                    self._let_go(coll)

    def session(self, name: str | None = None) -> SearchSession:
        """The search session of a served collection (the default one when ``name`` is ``None``)."""
        name = name or self.config.collection
        opened = self.sessions.get(name)  # no lock once opened: routes call this on the event loop
        if opened is not None:
            return opened
        with self.lock:
            if name not in self.sessions:
                self.sessions[name] = SearchSession.open(
                    self.store, name, self.model_options, self.config.loader
                )
            return self.sessions[name]

    def collection(self, name: str | None = None) -> Collection:
        return self.session(name).collection

    def warm(self) -> None:
        """Open the default collection and load its text tower (``/healthz`` is ok after this); a failure
        is kept for ``/healthz`` and the log, not raised: the server goes on answering why. A collection
        another process holds is tried again every :data:`RETRY_S` seconds until it is free (or the
        server stops): ``/healthz`` says ``waiting`` meanwhile."""
        while True:
            try:
                self.session().model("text")
            except StoreInUseError as exc:
                if not self.waiting:
                    log.warning(
                        "collection %r is in use; trying again every %g s", self.config.collection, RETRY_S
                    )
                self.waiting = f"{first_line(exc, 300)} (trying again every {RETRY_S:g} s)"
                if self.stopping.wait(RETRY_S):
                    return
                continue
            except Exception as exc:  # any other reason the model or store cannot be opened
                self.failure, self.waiting = first_line(exc, 300), None
                log.error("cannot serve collection %r: %s", self.config.collection, self.failure)
                return
            self.waiting = None
            self.ready = True
            return

    def query_model(self) -> str | None:
        """What encodes the default collection's text queries: runtime and precision ("torch bf16")."""
        model = self.session().models.loaded.get("text") if self.ready else None
        return f"{model.encoder.runtime.backend} {model.precision}" if model is not None else None

    def _rendered(self, result: str) -> None:
        self.metrics.renders.labels(result).inc()
        if result == "given_up":
            self.metrics.conversions_given_up.inc()

    async def encode_text(self, texts: list[str], name: str | None = None) -> np.ndarray:
        session = self.session(name)
        key = session.collection.record.model.get("checkpoint_sha256", session.collection.name)
        if key not in self.batchers:
            model = session.model("text")
            threads = query_threads()
            if model.encoder.runtime.backend == "torch":  # an ONNX session got its threads when loaded
                import torch

                if self.torch_threads is None:
                    self.torch_threads = torch.get_num_threads()
                torch.set_num_threads(threads)
            self.batchers[key] = MicroBatcher(
                lambda batch: np.atleast_2d(model.encode_text(batch)),
                self.config.max_batch,
                self.config.batch_wait,
                on_batch=self.metrics.batch_size.observe,
                workers=self.config.encode_workers or max(1, (os.cpu_count() or 1) // threads),
            )
        return await self.batchers[key].encode(texts)

    async def encode_music(self, data: str, name: str | None = None) -> np.ndarray:
        session = self.session(name)
        await asyncio.to_thread(session.model, "music")
        return await asyncio.to_thread(session.music_vector, data)

    def piece(self, pid: str, name: str | None = None) -> dict[str, Any]:
        coll = self.collection(name)
        return self.locked(get_piece, coll, pid, coll=coll)

    def piece_file(self, piece: dict[str, Any], prefer: str = "abc") -> Path:
        """The source file of a piece (the one its ``prefer`` vector came from), inside its corpus root."""
        return piece_file(self.collection(piece["collection"]), piece, prefer, self.config.corpus_roots)

    def facets(self, coll: Collection) -> dict[str, list[dict[str, Any]]]:
        """Display values with their counts, most common first, per facet field."""
        return {
            f: [{"value": v, "count": n} for v, n in self.locked(coll.facet, f, 200, coll=coll)]
            for f in FACET_FIELDS
        }

    def info(self, name: str) -> dict[str, Any]:
        coll = self.collection(name)
        return {**self.locked(coll.info, coll=coll), "facets": self.facets(coll)}

    def search(self, query: Query | Plan, vector: np.ndarray | None, name: str | None = None) -> Result:
        """Run ``query`` (or its plan) on a served collection: the default one in a search slot, beside
        other searches; another under the store lock."""
        session = self.session(name)
        if session.collection.name == self.config.collection:
            with self.search_slots:
                return session.find(query, vector)
        with self.lock:
            try:
                return session.find(query, vector)
            finally:
                self._let_go(session.collection)

    def _let_go(self, coll: Collection) -> None:
        """Release the embedded lock of a collection other than the default one after each use (a client
        naming a sibling must not keep it from other processes until the server stops); it opens
        again on the next request. Call under the store lock."""
        if coll.name != self.config.collection:
            coll.release()


__all__ = ["CollectionError", "CollectionNotFoundError", "PieceNotFound", "ServeConfig", "Service"]
