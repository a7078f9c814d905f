"""Where the collections live: Qdrant Edge shards in a folder (embedded), or a Qdrant server by URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from clamp2_engine.errors import StoreError, about
from clamp2_engine.paths import data_dir

ENV_PATH = "CLAMP2_QDRANT_PATH"
ENV_URL = "CLAMP2_QDRANT_URL"
DEFAULT_API_KEY_ENV = "QDRANT_API_KEY"
MEMORY = ":memory:"  # qdrant-client's in-process server stand-in (tests)

Engine = Literal["edge", "server", "local-mode"]


@dataclass(frozen=True)
class StoreSpec:
    """A store: an embedded folder (``path``), a server (``url``, or ``:memory:``), or a folder written by
    qdrant-client's local mode (``engine="local-mode"``, read by ``migrate --from-local-mode``).

    ``search_threads``: the threads each embedded shard reads its segments with in one search (Qdrant
    Edge's ``max_search_threads``); 0 lets Qdrant Edge derive them from the CPU count. A server has its own
    (``performance.max_search_threads`` in qdrant-config.yaml)."""

    path: Path | None = None
    url: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV
    engine: Engine | None = None
    search_threads: int = 0

    def __post_init__(self) -> None:
        if self.path is not None and not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))
        if self.engine is None:
            object.__setattr__(self, "engine", "server" if self.url else "edge")

    @property
    def is_local(self) -> bool:
        """An embedded store (one process at a time)."""
        return self.engine != "server"

    def describe(self) -> str:
        """Where the store is, for messages (a URL without credentials; never the API key)."""
        if self.engine == "edge":
            return f"embedded Qdrant Edge at {self.path}"
        if self.engine == "local-mode":
            return f"qdrant-client local-mode folder {self.path}"
        return "in-memory Qdrant" if self.url == MEMORY else f"Qdrant server {redact_url(self.url or '')}"


def redact_url(url: str) -> str:
    """``url`` without any ``user:password@`` part."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def default_path() -> Path:
    """The embedded store's folder: ``$CLAMP2_QDRANT_PATH`` or ``<data dir>/edge``."""
    env = os.environ.get(ENV_PATH)
    return Path(env).expanduser() if env else data_dir() / "edge"


def legacy_default_path() -> Path:
    """Where versions before Qdrant Edge kept the embedded (local-mode) store."""
    return data_dir() / "qdrant"


def is_local_mode_folder(path: Path) -> bool:
    """Whether ``path`` was written by qdrant-client's local mode (``meta.json`` + ``collection/``)."""
    return (path / "meta.json").is_file() and (path / "collection").is_dir()


def legacy_hint(spec: StoreSpec) -> str:
    """For the default embedded store: where an older version's collections are and how to bring them
    over; ``""`` when there are none."""
    legacy = legacy_default_path()
    if spec.engine != "edge" or spec.path != data_dir() / "edge" or not is_local_mode_folder(legacy):
        return ""
    return (
        f" (collections of clamp2-engine before Qdrant Edge are in {legacy}: `clamp2-engine migrate -c NAME "
        f"--from-local-mode {legacy} --to-path {spec.path}`)"
    )


def resolve_store(
    path: str | os.PathLike | None = None, url: str | None = None, api_key_env: str | None = None
) -> StoreSpec:
    """Pick the store: an explicit ``url`` or ``path`` first, then ``$CLAMP2_QDRANT_URL``, then
    ``$CLAMP2_QDRANT_PATH``, then the data folder."""
    key_env = api_key_env or DEFAULT_API_KEY_ENV
    if path is not None and url:
        raise about(
            StoreError("give either an embedded store's folder or a Qdrant URL, not both"), "qdrant_url"
        )
    if path is not None:
        return StoreSpec(path=Path(path).expanduser(), api_key_env=key_env)
    url = url or os.environ.get(ENV_URL) or None
    if url:
        return StoreSpec(url=url.strip(), api_key_env=key_env)
    return StoreSpec(path=default_path(), api_key_env=key_env)
