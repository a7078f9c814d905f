"""One way to turn an exception into the one line a user reads."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None, default: str | None = None) -> str:
    """The first line of ``exc``'s message, cut to ``limit`` characters; ``default`` (the exception's type
    name when ``None``) when the message is empty."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__ if default is None else default
    line = text.splitlines()[0]
    return line[:limit] if limit else line


def about(exc: BaseException, option: str) -> BaseException:
    """``exc`` marked as being about the library option ``option`` (``model``, ``text_model``, ``device``,
    ``qdrant_url``, ``like``, ...). Library messages name no command-line flag: the CLI adds the flag
    (``--text-model``), the HTTP API the field, each in its own words."""
    exc.option = option  # type: ignore[attr-defined]
    return exc


def option_of(exc: BaseException) -> str | None:
    """The option an error is about (see :func:`about`), or ``None``."""
    option = getattr(exc, "option", None)
    return option if isinstance(option, str) else None


# an optional dependency -> the extra that installs it (pyproject.toml's optional-dependencies)
EXTRAS = {
    "music21": "convert",
    "abctoolkit": "convert",
    "mido": "convert",
    "openai": "summarize",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
    "matplotlib": "plot",
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
    "verovio": "serve",
    "prometheus_client": "serve",
    "ray": "ray",
    "mcp": "mcp",
    "fastapi_offline": "serve",
    "langchain_core": "langchain",
}


def missing_extra_message(module: str) -> str | None:
    """The one line for a missing optional dependency, naming the ``pip install`` to run."""
    extra = EXTRAS.get(module.split(".")[0])
    if extra is None:
        return None
    return f"this needs {module.split('.')[0]}, from the optional extra '{extra}': pip install 'clamp2-engine[{extra}]'"


def require_extra(extra: str) -> None:
    """Import every module of ``extra`` now, so that a missing one fails before any work starts (some
    code paths would otherwise meet it deep inside a per-item fallback)."""
    import importlib

    for module in (m for m, e in EXTRAS.items() if e == extra):
        importlib.import_module(module)


# --- the store ---------------------------------------------------------------------------------------


class StoreError(OSError):
    """The store cannot be opened or reached; the message is one line for the user."""


class StoreInUseError(StoreError):
    """An embedded collection is held by another process."""


class StoreUnreachableError(StoreError):
    """A Qdrant server URL that does not answer like Qdrant."""


class CollectionDamagedError(StoreError):
    """A collection whose storage or record is damaged or incomplete: points missing, files that cannot be
    read, a lost record. ``collections verify`` says what, ``collections repair`` mends what it can."""


class DiskFullError(StoreError):
    """Not enough free space for a write; nothing was written."""


class CollectionError(ValueError):
    """A collection that does not exist, or does not fit the request; one line for the user."""


class CollectionNotFoundError(CollectionError, LookupError):
    """No collection of that name in the store."""


class CollectionExistsError(CollectionError):
    """A collection of that name was made meanwhile (by another process)."""


class ModelMismatchError(CollectionError):
    """Vectors from one model may not be mixed with (or searched by) another model's."""
