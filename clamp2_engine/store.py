"""Opening Qdrant: the embedded store in the user's data folder, or a server / cluster by URL.

Embedded (local) mode keeps everything in one folder (``CLAMP2_QDRANT_PATH`` or ``<data dir>/qdrant``)
and allows one process at a time; a server (``--qdrant-url`` / ``CLAMP2_QDRANT_URL``) serves many.
Both speak the same ``QdrantClient`` API, so the rest of the code never asks which one it has.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from clamp2_engine.paths import data_dir

if TYPE_CHECKING:  # pragma: no cover
    from qdrant_client import QdrantClient

ENV_PATH = "CLAMP2_QDRANT_PATH"
ENV_URL = "CLAMP2_QDRANT_URL"
DEFAULT_API_KEY_ENV = "QDRANT_API_KEY"
LOCAL_POINTS_WARNING = 20_000
PROBE_TIMEOUT_S = 5


class StoreError(OSError):
    """Qdrant cannot be opened or reached; the message is one line for the user."""


class StoreInUseError(StoreError):
    """The embedded store's folder is locked by another process."""


class StoreUnreachableError(StoreError):
    """A Qdrant server URL that does not answer like Qdrant."""


@dataclass(frozen=True)
class StoreSpec:
    """Where the collections live: a local folder (``path``) or a server (``url``)."""

    path: Path | None = None
    url: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV

    def __post_init__(self) -> None:
        if self.path is not None and not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))

    @property
    def is_local(self) -> bool:
        return self.url is None

    def describe(self) -> str:
        """Where the store is, for messages (a URL without credentials; never the API key)."""
        return (
            f"embedded Qdrant at {self.path}"
            if self.is_local
            else f"Qdrant server {redact_url(self.url or '')}"
        )


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
    """The embedded store's folder: ``$CLAMP2_QDRANT_PATH`` or ``<data dir>/qdrant``."""
    env = os.environ.get(ENV_PATH)
    return Path(env).expanduser() if env else data_dir() / "qdrant"


def resolve_store(
    path: str | os.PathLike | None = None, url: str | None = None, api_key_env: str | None = None
) -> StoreSpec:
    """Pick the store: an explicit ``url`` or ``path`` first, then ``$CLAMP2_QDRANT_URL``, then
    ``$CLAMP2_QDRANT_PATH``, then the data folder."""
    key_env = api_key_env or DEFAULT_API_KEY_ENV
    if path is not None and url:
        raise StoreError("give either --qdrant-path or --qdrant-url, not both")
    if path is not None:
        return StoreSpec(path=Path(path).expanduser(), api_key_env=key_env)
    url = url or os.environ.get(ENV_URL) or None
    if url:
        return StoreSpec(url=url.strip(), api_key_env=key_env)
    return StoreSpec(path=default_path(), api_key_env=key_env)


def open_client(spec: StoreSpec | None = None, *, timeout: int = PROBE_TIMEOUT_S) -> QdrantClient:
    """A connected ``QdrantClient`` for ``spec`` (default: :func:`resolve_store`), or :class:`StoreError`.

    A server is probed once (list collections) so that a wrong URL or key fails now, in seconds,
    with a clear message; the embedded store's lock is taken now, so a second process is told the
    store is in use instead of failing later.
    """
    spec = spec or resolve_store()
    return _open_local(spec) if spec.is_local else _open_remote(spec, timeout)


def _open_local(spec: StoreSpec) -> QdrantClient:
    from qdrant_client import QdrantClient

    assert spec.path is not None
    try:
        spec.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the embedded Qdrant folder {spec.path}: {exc.strerror or exc}"
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ll]ocal mode is not recommended.*")
            client = QdrantClient(path=os.fspath(spec.path))
        tune_local(client)
        return client
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise StoreInUseError(
                f"the embedded Qdrant store {spec.path} is in use by another process (an ingest, search or "
                "shell still running?). Wait for it to finish, or serve the collections from a Qdrant server "
                "(--qdrant-url) for concurrent access."
            ) from None
        raise StoreError(f"cannot open the embedded Qdrant store {spec.path}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot open the embedded Qdrant store {spec.path}: {exc}") from None


def _open_remote(spec: StoreSpec, timeout: int) -> QdrantClient:
    from qdrant_client import QdrantClient
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    url = spec.url or ""
    shown = redact_url(url)
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in ("http", "https"):
        raise StoreUnreachableError(
            f"--qdrant-url {shown!r} is not an http(s) URL (e.g. http://localhost:6333)"
        )
    api_key = os.environ.get(spec.api_key_env) or None
    try:
        client = QdrantClient(url=url, api_key=api_key, timeout=timeout, check_compatibility=False)
        client.get_collections()
    except UnexpectedResponse as exc:
        client_close(locals().get("client"))
        if exc.status_code in (401, 403):
            hint = f"set ${spec.api_key_env}" if api_key is None else f"check ${spec.api_key_env}"
            raise StoreUnreachableError(
                f"Qdrant server {shown} refused access ({exc.status_code}): {hint}"
            ) from None
        raise StoreUnreachableError(
            f"{shown} does not answer like a Qdrant server (HTTP {exc.status_code} {exc.reason_phrase})"
        ) from None
    except ResponseHandlingException as exc:
        client_close(locals().get("client"))
        reason = str(exc.source if getattr(exc, "source", None) else exc).strip().splitlines()
        raise StoreUnreachableError(
            f"cannot reach Qdrant server {shown}: {reason[0] if reason else type(exc).__name__}"
        ) from None
    except Exception as exc:  # invalid host names, unknown schemes: httpx / urllib3 errors
        client_close(locals().get("client"))
        msg = str(exc).replace(api_key, "***") if api_key else str(exc)
        raise StoreUnreachableError(
            f"cannot use Qdrant URL {shown}: {type(exc).__name__}: {msg.splitlines()[0] if msg else ''}"
        ) from None
    return client


def client_close(client: QdrantClient | None) -> None:
    """Close ``client`` (releasing the embedded store's lock); never raises."""
    if client is None:
        return
    try:
        client.close()
    except Exception:  # pragma: no cover - closing is best effort
        pass


def tune_local(client: QdrantClient) -> None:
    """Faster writes for the embedded store: its per-point SQLite commits use WAL and ``synchronous=NORMAL``
    (still consistent after a killed process; the last commits may be lost on power failure). A no-op
    for servers and for qdrant-client versions laid out differently."""
    import sqlite3

    for collection in getattr(getattr(client, "_client", None), "collections", {}).values():
        conn = getattr(getattr(collection, "storage", None), "storage", None)
        if isinstance(conn, sqlite3.Connection):
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:  # pragma: no cover - read-only or busy storage: keep the defaults
                pass


def is_local(client: QdrantClient) -> bool:
    """Whether ``client`` runs Qdrant's embedded (local, brute-force) mode."""
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


def local_size_warning(
    client: QdrantClient, collection: str, threshold: int = LOCAL_POINTS_WARNING
) -> str | None:
    """A warning for a large collection in the embedded store (searched by brute force), else ``None``."""
    if not is_local(client) or not client.collection_exists(collection):
        return None
    from clamp2_engine.index import piece_count

    n = piece_count(client, collection)
    if n <= threshold:
        return None
    return (
        f"collection {collection!r} holds {n:,} points in the embedded store, which searches by brute force "
        f"(slower past ~{threshold:,} points): serve it from a Qdrant server instead, configured by "
        "qdrant-config.yaml, and copy it there with `clamp2-engine migrate`"
    )
