"""``Store``: the collections of one place (list, create, ensure, drop; a context manager), and the one
check of a collection's name. :mod:`.collection` is one collection: what it stores and how it is searched."""

from __future__ import annotations

from typing import Any

from clamp2_engine.errors import (
    CollectionDamagedError,
    CollectionError,
    CollectionExistsError,
    CollectionNotFoundError,
    StoreError,
    StoreInUseError,
    about,
)
from clamp2_engine.store.backend import Backend, Layout
from clamp2_engine.store.collection import Collection, missing_points
from clamp2_engine.store.fields import INDEXES
from clamp2_engine.store.schema import CollectionRecord, check_model, new_record
from clamp2_engine.store.spec import StoreSpec, legacy_hint, resolve_store

MAX_NAME = 255


def check_name(name: str) -> str:
    """``name`` when it can name a collection (1 to 255 printable characters, no ``/`` or ``\\``, not
    ``.`` or ``..``); else :class:`CollectionError`, the name shown cut to a readable length."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > MAX_NAME
        or name in (".", "..")
        or any(c in name for c in "/\\")
        or not name.isprintable()
    ):
        shown = repr(name[:40] + "..." if isinstance(name, str) and len(name) > 40 else name)
        raise CollectionError(
            f"{shown} is no collection name: 1 to {MAX_NAME} printable characters, without / or \\"
        )
    return name


def open_backend(spec: StoreSpec) -> Backend:
    """The engine for ``spec``: Qdrant Edge for a folder, qdrant-client otherwise."""
    if spec.engine == "edge":
        from clamp2_engine.store.edge import EdgeBackend

        return EdgeBackend(spec)
    from clamp2_engine.store.server import ServerBackend

    return ServerBackend(spec)


class Store:
    """The collections of one store; a context manager that releases the embedded engine's locks."""

    def __init__(self, spec: StoreSpec | None = None):
        self.spec = spec or resolve_store()
        self.backend = open_backend(self.spec)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    def describe(self) -> str:
        return self.spec.describe()

    def exists(self, name: str) -> bool:
        return self.backend.exists(check_name(name))

    def collection(self, name: str, check: bool = True) -> Collection:
        """Collection ``name``; :class:`CollectionNotFoundError` when there is none, :class:`CollectionError`
        when ``name`` cannot name one, :class:`CollectionDamagedError` when it holds fewer points than its
        record says (``check=False``: opened all the same, to verify, repair or drop it)."""
        if not self.backend.exists(check_name(name)):
            raise CollectionNotFoundError(
                f"no collection {name!r} (see `clamp2-engine collections list`)" + legacy_hint(self.spec)
            )
        record = CollectionRecord.from_dict(self.backend.read_meta(name), name)
        self.backend.hold(name)
        coll = Collection(self.backend, name, record)
        if check:
            coll.check_points()
        return coll

    def create(self, name: str, record: CollectionRecord) -> Collection:
        """A new, empty collection laid out for ``record``'s model; :class:`CollectionExistsError` when one
        of that name exists (another process made it first)."""
        try:
            layout = Layout(record.dim, tuple(INDEXES), record.lexical, record.quantization)
            self.backend.create(name, layout, record.as_dict())
        except CollectionError:
            raise
        except ValueError as exc:  # invalid names
            raise CollectionError(f"cannot create collection {name!r}: {exc}") from None
        return Collection(self.backend, name, record)

    def ensure(
        self, name: str, identity: Any, source: dict[str, Any], quantization: str | None = None
    ) -> Collection:
        """Collection ``name`` for ``identity``: created (its vectors kept as ``quantization`` says;
        ``None``: the default), or checked to hold the same model's vectors and, when ``quantization`` is
        given, to keep them so (also when another process creates it at the same time: the second creator
        opens the first's)."""
        record = new_record(identity, source, quantization)
        if not self.backend.exists(name):
            try:
                return self.create(name, record)
            except CollectionExistsError:
                pass
        coll = self.collection(name)
        check_model(coll.record, identity, name)
        if quantization is not None and coll.record.quantization != record.quantization:
            raise about(
                CollectionError(
                    f"collection {name!r} keeps its vectors as {coll.record.quantization}, not "
                    f"{record.quantization}: convert it with `clamp2-engine collections optimize {name} "
                    f"--quantization {record.quantization}`"
                ),
                "quantization",
            )
        return coll

    def list(self) -> list[dict[str, Any]]:
        """Name, points and model of every collection (clamp2-engine's and others); ``points`` is
        ``None`` for an embedded collection another process holds."""
        rows = []
        for name in self.backend.names():
            problem: str | None = None
            try:
                rec: CollectionRecord | None = CollectionRecord.from_dict(self.backend.read_meta(name), name)
            except (CollectionError, CollectionDamagedError) as exc:
                rec, problem = None, str(exc)
            held = self.backend.holds(name)
            points: int | None = None
            try:
                points = self.backend.count(name)
                if not held:  # opened only to count: let other processes have it again
                    self.backend.release(name)
            except StoreInUseError:
                pass
            except StoreError as exc:  # one damaged collection is a row of its own, never the listing's end
                problem = problem or str(exc)
            if problem is None and rec is not None and rec.points is not None and points is not None:
                problem = missing_points(name, points, rec.points)
            rows.append(
                {
                    "name": name,
                    "points": points,
                    "model": rec.model.get("name") if rec else None,
                    "dim": rec.dim if rec else None,
                    "created": rec.created if rec else None,
                    "status": "damaged" if problem else ("ok" if points is not None else "in use"),
                    "problem": problem,
                }
            )
        return rows

    def drop(self, name: str) -> None:
        if not self.backend.exists(check_name(name)):
            raise CollectionNotFoundError(f"no collection {name!r}")
        self.backend.drop(name)


def open_store(spec: StoreSpec | None = None) -> Store:
    """The store named by ``spec`` (default: :func:`resolve_store`), or :class:`StoreError`."""
    return Store(spec)
