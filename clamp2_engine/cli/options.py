"""Options shared by every command that loads a model, and the one place that loads it for the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from clamp2_engine.loading import LoadOptions
from clamp2_engine.music.text import MAX_TEXT_LENGTH
from clamp2_engine.types import BACKENDS as BACKEND_CHOICES
from clamp2_engine.types import DTYPES as DTYPE_CHOICES

EXIT_CODES = "Exit status: 0 all items done, 1 some items failed (0 with --allow-failures), 2 usage errors."

allow_failures_option = click.option(
    "--allow-failures",
    is_flag=True,
    help="Exit 0 even when some items failed (they are listed in the errors file either way).",
)


INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells use


def interrupted(what: str = "") -> NoReturn:
    """End a command that Ctrl-C stopped: one line (``what`` says what is kept), exit status 130."""
    click.echo("interrupted" + (f"; {what}" if what else ""), err=True)
    raise click.exceptions.Exit(INTERRUPTED)


def exit_for_failures(failed: int, allow: bool) -> None:
    """The batch commands' exit status: 1 when ``failed`` items gave nothing, unless ``allow``."""
    if failed and not allow:
        raise SystemExit(1)


max_text_length_option = click.option(
    "--max-text-length",
    type=click.IntRange(2, 8192),
    default=None,
    metavar="N",
    help="Text tokens per window (the reference's MAX_TEXT_LENGTH). Default: what the checkpoint or "
    f"collection records, else {MAX_TEXT_LENGTH}.",
)


STORE_OPTION_NAMES = ("qdrant_path", "qdrant_url", "qdrant_api_key_env")


def store_options(f: Callable) -> Callable:
    """--qdrant-path / --qdrant-url / --qdrant-api-key-env (env CLAMP2_QDRANT_PATH, CLAMP2_QDRANT_URL)."""
    opts = [
        click.option(
            "--qdrant-path",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Embedded Qdrant folder (one process at a time). Default: $CLAMP2_QDRANT_PATH, "
            "else <data dir>/edge.",
        ),
        click.option(
            "--qdrant-url",
            default=None,
            metavar="URL",
            help="Qdrant server or cluster, e.g. http://localhost:6333. Env: CLAMP2_QDRANT_URL.",
        ),
        click.option(
            "--qdrant-api-key-env",
            default="QDRANT_API_KEY",
            show_default=True,
            metavar="VAR",
            help="Environment variable holding the server's API key (never printed).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def quantization_option(help_text: str) -> Callable:
    """``--quantization``: how a collection keeps its vectors (one spelling for ingest and optimize)."""
    from clamp2_engine.store.quantization import KINDS

    return click.option("--quantization", type=click.Choice(KINDS), default=None, help=help_text)


def collection_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A usable collection name (checked before anything is opened), or a usage error."""
    from clamp2_engine.store import CollectionError
    from clamp2_engine.store.stores import check_name

    if value is None:
        return None
    try:
        return check_name(value)
    except CollectionError as exc:
        raise click.BadParameter(str(exc)) from None


def open_store(kwargs: dict[str, Any]):
    """Pop the store options from ``kwargs``; return the :class:`~clamp2_engine.store.Store` they name,
    or raise a one-line error."""
    from clamp2_engine.store import StoreError
    from clamp2_engine.store import open_store as open_

    path, url, key_env = (kwargs.pop(k, None) for k in STORE_OPTION_NAMES)
    try:
        return open_(resolve_spec(path, url, key_env))
    except StoreError as exc:
        raise fail(exc) from None


def resolve_spec(path: Any, url: str | None, key_env: str | None):
    """The store spec of the options (env defaults), or a one-line error."""
    from clamp2_engine.store import StoreError, resolve_store

    try:
        return resolve_store(path, url, key_env)
    except StoreError as exc:
        raise fail(exc) from None


@contextmanager
def store_client(kwargs: dict[str, Any]) -> Iterator[Any]:
    """``with store_client(kwargs) as store:`` the store named by the options, closed afterwards
    (releasing the embedded engine's locks) however the command ends."""
    with open_store(kwargs) as store:
        yield store


# the flag (and its argument) that sets a library option, for the hint an error about it ends with
FLAGS = {
    "model": "--model PATH|NAME",
    "text_model": "--text-model DIR",
    "max_text_length": "--max-text-length N",
    "dtype": "--dtype",
    "device": "--device",
    "qdrant_url": "--qdrant-path DIR or --qdrant-url URL",
    "like": "--like ID",
    "unlike": "--unlike ID",
    "corpus_root": "--corpus-root NAME=FOLDER",
    "metadata": "--metadata FILE",
    "corpus": "--corpus NAME",
    "batch_size": "--batch-size",
    "resume": "--resume, or another --out",
}


def fail(exc: BaseException) -> click.ClickException:
    """A library error as the one-line error a command prints (exit status 1), ending with the flag that
    sets the option it is about (the library names none)."""
    from clamp2_engine.errors import first_line, option_of

    option = option_of(exc)
    hint = f" [{FLAGS.get(option, '--' + option.replace('_', '-'))}]" if option else ""
    return click.ClickException(first_line(exc) + hint)


def model_options() -> Callable:
    """Decorator adding --model, --text-model, --device, --dtype, --backend, --onnx-dir, --max-batch-tokens,
    --batch-size, --max-text-length."""

    def decorate(f: Callable) -> Callable:
        opts = [
            click.option(
                "--model",
                "model",
                envvar="CLAMP2_MODEL",
                default=None,
                metavar="PATH|NAME",
                help="Checkpoint file (reference format) or a known name; default: clamp2 "
                "(released weights from the Hugging Face Hub). Env: CLAMP2_MODEL.",
            ),
            click.option(
                "--text-model",
                envvar="CLAMP2_TEXT_MODEL",
                default=None,
                metavar="DIR|NAME",
                help="Folder (or Hub name) with the XLM-R config and tokenizer; default: "
                "FacebookAI/xlm-roberta-base. Env: CLAMP2_TEXT_MODEL.",
            ),
            click.option(
                "--device",
                default=None,
                metavar="cpu|cuda",
                help="Where to run; default: cuda when available, else cpu.",
            ),
            click.option(
                "--dtype",
                type=click.Choice(DTYPE_CHOICES),
                default="auto",
                show_default=True,
                help="Compute precision (torch backend). auto: bf16 where the CPU computes it natively "
                "(AVX-512 BF16, AMX), else fp32; bf16 on GPUs (fp16 before Ampere). $CLAMP2_DTYPE sets "
                "what auto means.",
            ),
            click.option(
                "--backend",
                type=click.Choice(BACKEND_CHOICES),
                default=None,
                help="Inference runtime; default: torch, except that search and serve use the model's "
                "cached ONNX export (`export onnx` without --out) when there is one.",
            ),
            click.option(
                "--onnx-dir",
                type=click.Path(file_okay=False),
                default=None,
                help="Folder written by `export onnx` (with --backend onnx).",
            ),
            click.option(
                "--max-batch-tokens",
                type=click.IntRange(1, 1 << 24),
                default=None,
                help="Padded positions (patches or tokens) per forward pass; default: tuned per device and "
                "dtype (1024 on CPU at fp32, 16384 or more on a GPU).",
            ),
            click.option(
                "--batch-size",
                type=click.IntRange(1, 4096),
                default=None,
                help="Windows per forward pass at most; default: as many as --max-batch-tokens allows.",
            ),
            max_text_length_option,
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f

    return decorate


MODEL_OPTION_NAMES = (
    "model",
    "text_model",
    "device",
    "dtype",
    "backend",
    "onnx_dir",
    "batch_size",
    "max_batch_tokens",
    "max_text_length",
)


def pop_model_options(kwargs: dict[str, Any]) -> LoadOptions:
    """Remove the model options from a command's kwargs and return them, checked together."""
    options = LoadOptions.of({k: kwargs.pop(k) for k in MODEL_OPTION_NAMES if k in kwargs})
    if options.backend == "onnx" and not options.onnx_dir:
        raise click.UsageError("--backend onnx needs --onnx-dir DIR (written by `clamp2-engine export onnx`)")
    return options


def open_model(options: LoadOptions, **chosen: Any):
    """Load the model for a command (``chosen``: more :class:`LoadOptions`, such as ``towers`` or
    ``kind``); every expected failure becomes a one-line ``ClickException``."""
    from dataclasses import replace

    from clamp2_engine.checkpoints import CheckpointError, ModelNotFoundError
    from clamp2_engine.pretrained import load

    try:
        return load(replace(options, **chosen))
    except (ModelNotFoundError, CheckpointError, ValueError, RuntimeError, OSError) as exc:
        raise fail(exc) from None


PIPE_WIDTH = 200  # columns of a table written to a pipe or file (Rich's 80 would cut titles short)


def table_console() -> Any:
    """A Rich console for tables on stdout: the terminal's width, or :data:`PIPE_WIDTH` when stdout is a
    pipe or a file (``$COLUMNS`` still wins)."""
    import os
    import sys

    from rich.console import Console

    wide = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return Console(width=PIPE_WIDTH if wide else None)
