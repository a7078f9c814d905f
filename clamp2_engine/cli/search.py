"""``search`` and ``shell``: a collection searched by text, by a piece of music, or by pieces it holds;
thin layers over :class:`clamp2_engine.search.session.SearchSession`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from clamp2_engine.cli.options import (
    collection_name,
    fail,
    model_options,
    pop_model_options,
    store_client,
    store_options,
    table_console,
)
from clamp2_engine.jsonl import dumps, printable
from clamp2_engine.types import LEXICAL_WEIGHT, MODALITIES, MODES

MODALITY_CHOICES = MODALITIES


# --- search -------------------------------------------------------------------------------------------


def _search_options(f: Callable) -> Callable:
    opts = [
        click.option(
            "-c", "--collection", required=True, callback=collection_name, help="Collection to search."
        ),
        click.option(
            "--modality",
            type=click.Choice(MODALITY_CHOICES),
            default="any",
            show_default=True,
            help="Vectors searched: abc, mtf, text (the pieces' summaries), or any (abc and mtf, "
            "each piece scored by its best).",
        ),
        click.option(
            "--mode",
            type=click.Choice(MODES),
            default="hybrid",
            show_default=True,
            help="How a text query is matched: hybrid (meaning and words: titles, composers, summaries; "
            "fused by reciprocal rank), semantic (CLaMP 2 alone), lexical (words alone, BM25). Music and "
            "--like queries are matched by meaning.",
        ),
        click.option(
            "--lexical-weight",
            type=click.FloatRange(0, 100),
            default=None,
            metavar="W",
            help=f"Hybrid: the weight of the words against meaning's 1.0 in the fusion (default {LEXICAL_WEIGHT:g}).",
        ),
        click.option("-k", "--top-k", type=click.IntRange(1, 10_000), default=10, show_default=True),
        click.option(
            "--filter",
            "filters",
            multiple=True,
            metavar="KEY=VALUE",
            help="Payload filter, repeatable (all must hold): composer=bach (a word of the value, any case "
            "or accents), composer==J.S. Bach (the exact value), genres=folk,jazz (any of them), "
            "corpus!=drafts.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


class Searcher:
    """The CLI's face of a :class:`SearchSession`: library errors as one-line messages."""

    def __init__(self, store, collection: str, options: dict[str, Any]):
        from clamp2_engine.search.session import SearchSession
        from clamp2_engine.store import CollectionError, StoreError

        try:
            self.session = SearchSession.open(store, collection, options, loader=open_tower)
        except (CollectionError, StoreError) as exc:
            raise fail(exc) from None
        self.collection = self.session.collection
        self.told: set[str] = set()  # notices are said once a session

    def model(self, tower: str):
        """The model with the ``text`` or ``music`` tower, as the collection's record says to load it."""
        from clamp2_engine.store import ModelMismatchError

        try:
            return self.session.model(tower)
        except ModelMismatchError as exc:
            raise fail(exc) from None

    def search(self, query, music: Path | None = None, tune: str | None = None):
        """The result of ``query`` (a :class:`clamp2_engine.search.Query`), with ``music`` its example
        (``tune``: which piece of a file of several)."""
        from clamp2_engine.store import StoreError

        try:
            vector = None
            if music is not None:
                from clamp2_engine.music.inputs import music_query_input

                notes: list[str] = []
                vector = self.session.music_vector(music_query_input(music, tune=tune, notes=notes)[1])
                for note in notes:
                    click.echo(f"note: {note}", err=True)
            result = self.session.find(query, vector)
        except (ValueError, StoreError) as exc:  # the library's errors (CollectionError, a damaged store)
            raise fail(exc) from None
        for notice in result.notices:
            if notice not in self.told:
                click.echo(f"note: {notice}", err=True)
                self.told.add(notice)
        return result


MISSING_QUERY = "give a QUERY text, --music FILE or --like ID"


def make_query(**fields: Any):
    """A :class:`clamp2_engine.search.Query`, or a usage error."""
    from clamp2_engine.search import Query, QueryError

    weight = fields.pop("lexical_weight", None)
    try:
        return Query(**fields, weights=None if weight is None else (1.0, weight))
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None


def open_tower(options, tower: str):
    """One tower of the model named by the command's options; failures as one-line errors."""
    from clamp2_engine.cli.options import open_model

    return open_model(options, towers=(tower,))


def _print_hits(hits, as_json: bool, title: str = "", why: str | None = None) -> None:
    if as_json:
        for h in hits:
            click.echo(dumps(h.as_dict()))
        if why:
            click.echo(f"no hits: {why}", err=True)
        return
    if not hits:  # the reason alone, no empty table
        click.echo(f"no hits: {why}" if why else "no hits")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title) if title else None)
    abouts = [_about(h.payload) for h in hits]
    columns = [
        ("rank", {"justify": "right"}),
        ("score", {"justify": "right"}),
        ("title", {}),
        ("composer", {}),
        *([("about", {})] if any(abouts) else []),
        ("path", {"overflow": "fold"}),
        ("modality", {}),
    ]
    for col, kw in columns:
        table.add_column(col, **kw)
    for h, about in zip(hits, abouts, strict=True):
        p = h.payload
        path = str(p.get("source", "")) + (f"#{p['part']}" if p.get("part") else "")
        cells = [
            str(p.get("title") or ""),
            str(p.get("composer") or ""),
            *([about] if any(abouts) else []),
            path,
        ]
        table.add_row(str(h.rank), f"{h.score:.4f}", *(Text(printable(c)) for c in cells), h.modality)
    table_console().print(table)


ABOUT_FIELDS = ("genre", "genres", "meter", "key", "voices")


def _about(payload: dict[str, Any]) -> str:
    """A few descriptive metadata fields of a hit (genre, meter, voices) when it has them."""
    meta = payload.get("metadata") or {}
    parts = []
    for key in ABOUT_FIELDS:
        value = meta.get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value[:3])
        if value not in (None, ""):
            parts.append(f"{value} voice{'s' * (value != 1)}" if key == "voices" else str(value))
    return " · ".join(parts)


@click.command()
@click.argument("query", required=False)
@click.option(
    "--music",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Query by example: a score, MIDI or .mtf file (instead of QUERY).",
)
@click.option(
    "--tune",
    metavar="N",
    default=None,
    help="With --music, a file of several pieces (an ABC tune book): the tune numbered X:N (default: the first).",
)
@click.option(
    "--like",
    multiple=True,
    metavar="ID",
    help="More like this piece (a point id; repeatable). Scores are Qdrant's best-score recommend scores: "
    "a sigmoid of the best similarity to an example, so about 0.75 is the most (a copy), not cosine.",
)
@click.option(
    "--unlike", multiple=True, metavar="ID", help="Less like this piece (repeatable; with --like or QUERY)."
)
@click.option("--diverse", is_flag=True, help="Varied results (maximal marginal relevance), not near-copies.")
@_search_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit (JSON Lines).")
@store_options
@model_options()
def search(
    query: str | None,
    music: Path | None,
    tune: str | None,
    like: tuple[str, ...],
    unlike: tuple[str, ...],
    diverse: bool,
    collection: str,
    modality: str,
    mode: str,
    lexical_weight: float | None,
    top_k: int,
    filters: tuple[str, ...],
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Search a collection by text in any language (QUERY), by a piece of music (--music FILE), or by
    pieces it holds (--like ID, --unlike ID).

    A text query is matched by meaning and by words (--mode hybrid): titles, composers and summaries
    count, so "bwv 278" finds the piece of that name. It loads only the text tower (--mode lexical: no
    model); --music only the music tower; --like alone no model.
    """
    if query is not None and not query.strip(" \t\r\n\x00"):
        query = None  # an empty query is a missing one: one message for both
    if query is not None and music is not None:
        raise click.UsageError("give a QUERY text or --music FILE, not both")
    if query is None and music is None and not like:
        raise click.UsageError(MISSING_QUERY)
    request = make_query(
        text=query,
        modality=modality,
        mode=mode,
        k=top_k,
        filters=tuple(filters),
        like=tuple(like),
        unlike=tuple(unlike),
        diverse=diverse,
        lexical_weight=lexical_weight,
    )
    _check_filters(filters)  # before the store or a model is opened
    options = pop_model_options(kwargs)
    with store_client(kwargs) as store:
        searcher = Searcher(store, collection, options)
        result = searcher.search(request, music, tune)
        label = (
            printable(query) if query is not None else (music.name if music else "like " + ", ".join(like))
        )
        _print_hits(result.hits, as_json, title=f"{collection}: {label}", why=result.why)


def _check_filters(filters: tuple[str, ...] | list[str]) -> None:
    from clamp2_engine.store import parse_filters

    try:
        parse_filters(filters)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


SHELL_HELP = """\
type a text to search; commands:
  :music PATH [N]   search by a piece of music (score, MIDI, .mtf; N: tune X:N of a tune book)
  :mode hybrid|semantic|lexical               how a text is matched (meaning and words, or one)
  :k N              hits per query            :modality abc|mtf|text|any   (alone: the value now)
  :filter KEY=VAL   add a filter              :filter        show filters     :clear   drop filters
  :json             toggle JSON output        :help          this text        :quit    leave (or Ctrl-D)"""


@click.command()
@_search_options
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON Lines.")
@store_options
@model_options()
def shell(
    collection: str,
    modality: str,
    mode: str,
    lexical_weight: float | None,
    top_k: int,
    filters: tuple[str, ...],
    as_json: bool,
    **kwargs: Any,
) -> None:
    """An interactive search session: the model and the store are opened once."""

    _check_filters(filters)
    options = pop_model_options(kwargs)
    with store_client(kwargs) as store:
        click.echo(f"opening {collection} and its query model ...", err=True)  # said before the wait
        searcher = Searcher(store, collection, options)
        if mode != "lexical":
            searcher.model("text")
        state = {
            "k": top_k,
            "modality": modality,
            "mode": mode,
            "lexical_weight": lexical_weight,
            "filters": list(filters),
            "json": as_json,
        }
        click.echo(f"{collection} on {store.describe()}; :help for commands", err=True)
        interactive = sys.stdin.isatty()
        if interactive:
            import readline  # noqa: F401 - line editing and history for input()
        while True:
            try:
                line = (input("search> ") if interactive else sys.stdin.readline() or _eof()).strip()
            except EOFError:
                if interactive:
                    click.echo(err=True)  # Ctrl-D: the prompt's line ends before the shell's prompt returns
                break
            except KeyboardInterrupt:  # Ctrl-C clears the line, as in a shell; Ctrl-D or :quit leaves
                click.echo("^C  (:quit or Ctrl-D to leave)", err=True)
                continue
            if not line:
                continue
            if line in (":q", ":quit", ":exit", "exit", "quit"):
                break
            try:
                _shell_line(searcher, line, state)
            except click.ClickException as exc:
                click.echo(f"error: {exc.format_message()}", err=True)
            except KeyboardInterrupt:  # a search cut short; the session goes on
                click.echo("interrupted", err=True)


def _eof() -> str:
    raise EOFError


def _shell_line(searcher: Searcher, line: str, state: dict[str, Any]) -> None:
    cmd, _, arg = line.partition(" ")
    arg = arg.strip()
    if cmd == ":help":
        click.echo(SHELL_HELP)
    elif cmd in (":k", ":modality", ":mode") and not arg:  # alone: the value now
        name = cmd.removeprefix(":")
        click.echo(f"{name} = {state[name]}")
    elif cmd == ":k":
        if not arg.isdigit() or int(arg) < 1:
            raise click.ClickException(":k needs a positive number")
        state["k"] = int(arg)
        click.echo(f"k = {state['k']} hits per query")
    elif cmd == ":modality":
        if arg not in MODALITY_CHOICES:
            raise click.ClickException(f":modality takes one of {', '.join(MODALITY_CHOICES)}")
        state["modality"] = arg
        click.echo(f"modality = {arg}")
    elif cmd == ":mode":
        if arg not in MODES:
            raise click.ClickException(f":mode takes one of {', '.join(MODES)}")
        state["mode"] = arg
        click.echo(f"mode = {arg}")
    elif cmd == ":filter":
        if arg:
            from clamp2_engine.store import parse_filters

            try:
                parse_filters([arg])
            except ValueError as exc:
                raise fail(exc) from None
            state["filters"].append(arg)
        click.echo("filters: " + (", ".join(state["filters"]) or "none"))
    elif cmd == ":clear":
        state["filters"] = []
        click.echo("filters: none")
    elif cmd == ":json":
        state["json"] = not state["json"]
        click.echo(f"JSON output {'on' if state['json'] else 'off'}")
    elif cmd == ":music":
        name, tune = arg, None
        if not Path(arg).expanduser().is_file() and " " in arg:  # :music PATH N
            name, _, tune = arg.rpartition(" ")
        path = Path(name).expanduser()
        if not path.is_file():
            raise click.ClickException(f"no file {arg!r}")
        _shell_search(searcher, state, arg, music=path, tune=tune)
    elif cmd.startswith(":"):
        raise click.ClickException(f"unknown command {cmd} (:help lists them)")
    else:
        _shell_search(searcher, state, line, text=line)


def _shell_search(
    searcher: Searcher,
    state: dict[str, Any],
    label: str,
    text: str | None = None,
    music: Path | None = None,
    tune: str | None = None,
) -> None:
    started = time.perf_counter()
    query = make_query(
        text=text,
        modality=state["modality"],
        mode=state["mode"],
        k=state["k"],
        filters=tuple(state["filters"]),
        lexical_weight=state["lexical_weight"],
    )
    result = searcher.search(query, music, tune)
    ms = (time.perf_counter() - started) * 1000
    _print_hits(result.hits, state["json"], title=f"{printable(label)} ({ms:.0f} ms)", why=result.why)
