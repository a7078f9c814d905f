"""The ``clamp2-engine`` command line: noun groups and verbs, each a thin layer over the library.

Command modules are imported lazily, so ``clamp2-engine --help`` and light commands start fast and
the core never imports ``clamp2_engine.ingest``, ``.train`` or ``.exporters`` unless a command needs them.
"""

from __future__ import annotations

import importlib
import logging

import click

# name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "demo": "clamp2_engine.cli.demo:demo",
    "embed": "clamp2_engine.cli.embed:embed",
    "models": "clamp2_engine.cli.models:models",
    "convert": "clamp2_engine.cli.convert:convert",
    "summarize": "clamp2_engine.cli.summarize:summarize",
    "ingest": "clamp2_engine.cli.ingest:ingest",
    "search": "clamp2_engine.cli.search:search",
    "shell": "clamp2_engine.cli.search:shell",
    "collections": "clamp2_engine.cli.collections:collections",
    "migrate": "clamp2_engine.cli.collections:migrate",
    "serve": "clamp2_engine.cli.serve:serve",
    "mcp": "clamp2_engine.cli.mcp:mcp",
    "export": "clamp2_engine.cli.export:export",
    "train": "clamp2_engine.cli.train:train",
    "eval": "clamp2_engine.cli.evaluate:eval_cmd",
    "score": "clamp2_engine.cli.evaluate:score",
    "classify": "clamp2_engine.cli.classify:classify",
}


def missing_extra(exc: ModuleNotFoundError) -> click.ClickException | None:
    """The one line for a missing optional dependency, naming the ``pip install`` to run."""
    from clamp2_engine.errors import missing_extra_message

    message = missing_extra_message(exc.name or "")
    return click.ClickException(message) if message else None


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def invoke(self, ctx: click.Context):
        """Every command: a missing extra is one line naming the ``pip install``; Ctrl-C ends it with one
        line and exit status 130 (what was done is kept by each command's design), never a traceback or
        click's "Aborted!" with status 1."""
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            message = missing_extra(exc)
            if message is None:
                raise
            raise message from None
        except KeyboardInterrupt:
            from clamp2_engine.cli.options import interrupted

            interrupted()

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module_name, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clamp2-engine")
def main() -> None:
    """CLaMP 2 music retrieval: embed, convert, index, search, evaluate, export and train.

    New here? `clamp2-engine demo` runs it end to end, offline, with a small model shipped in the package.
    """
    show_warnings()


class _Warning(logging.Handler):
    """The library's warnings and errors as ``warning: ...`` lines on stderr (through click, so tests see
    them), with the traceback when one was logged (a server fault)."""

    def emit(self, record: logging.LogRecord) -> None:
        import traceback

        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        click.echo(text, err=True)


def show_warnings() -> None:
    """Print the library's warnings (``clamp2_engine`` logger) once per process, one line each."""
    logger = logging.getLogger("clamp2_engine")
    if not any(isinstance(h, _Warning) for h in logger.handlers):
        handler = _Warning(logging.WARNING)
        logger.addHandler(handler)


if __name__ == "__main__":  # pragma: no cover
    main()
