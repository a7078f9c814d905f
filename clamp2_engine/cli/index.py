"""``ingest``, ``search``, ``shell``, ``collections`` and ``migrate``: music collections in Qdrant.

Light at import time: Qdrant, torch and ``ingest`` are imported inside the commands.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from clamp2_engine.cli.options import (
    EXIT_CODES,
    allow_failures_option,
    collection_name,
    exit_for_failures,
    fail,
    model_options,
    pop_model_options,
    store_client,
    store_options,
)
from clamp2_engine.jsonl import dumps, printable
from clamp2_engine.types import MODALITIES

MODALITY_CHOICES = MODALITIES


def _file_name(name: str) -> str:
    """``name`` made safe as a file name."""
    return re.sub(r"[^\w.-]", "_", name).lstrip(".") or "collection"


# --- ingest -------------------------------------------------------------------------------------------


@click.command(epilog=EXIT_CODES)
@click.argument("corpus", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-c", "--collection", required=True, callback=collection_name, help="Collection to create or update."
)
@click.option(
    "--metadata",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="items.jsonl (or a folder of .json items) whose `filepaths` name files of CORPUS; default: "
    "the JSONL beside CORPUS/abc and CORPUS/mtf (seed layout), else every music file of CORPUS.",
)
@click.option(
    "--corpus-name",
    default=None,
    help="Name of this corpus in the collection (default: the folder name); part of every point id.",
)
@click.option(
    "--render/--no-render",
    default=True,
    show_default=True,
    help="Also render scores to MIDI for an `mtf` vector (music21; slow for long scores).",
)
@click.option(
    "--write-batch",
    type=click.IntRange(1, 100_000),
    default=32,
    show_default=True,
    help="Pieces embedded and written per batch (a killed run redoes at most one batch).",
)
@click.option(
    "--jobs",
    type=click.IntRange(0, 1024),
    default=None,
    help="Worker processes converting scores (default: CPU count; 0: in this process, no time limit).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=180.0,
    show_default=True,
    help="Seconds one score may take to convert in a worker before it is given up (logged).",
)
@click.option(
    "--summarize",
    is_flag=True,
    help="Summarize the metadata with an LLM first; the summaries become `text` vectors.",
)
@click.option(
    "--base-url", envvar="OPENAI_BASE_URL", default=None, help="With --summarize: OpenAI-compatible API root."
)
@click.option("--llm", default=None, help="With --summarize: the chat model name.")
@click.option(
    "--api-key-env",
    default="OPENAI_API_KEY",
    show_default=True,
    help="With --summarize: variable holding the LLM API key (never printed).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=8,
    show_default=True,
    help="With --summarize: requests in flight.",
)
@click.option(
    "--summaries",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --summarize: where the summaries are kept (default: <data dir>/summaries/COLLECTION.jsonl).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run's counts as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@allow_failures_option
@store_options
@model_options()
def ingest(
    corpus: Path,
    collection: str,
    metadata: Path | None,
    corpus_name: str | None,
    render: bool,
    write_batch: int,
    jobs: int | None,
    timeout: float,
    summarize: bool,
    base_url: str | None,
    llm: str | None,
    api_key_env: str,
    concurrency: int,
    summaries: Path | None,
    as_json: bool,
    quiet: bool,
    allow_failures: bool,
    **kwargs: Any,
) -> None:
    """Index the music of CORPUS into a Qdrant collection (re-runs embed only what changed).

    CORPUS is a folder of scores (.xml .mxl .abc .krn ...), MIDI and .mtf files, or the seed layout
    (abc/, mtf/ and a JSONL of items with `filepaths` and `summary_en`).
    """
    from clamp2_engine.checkpoints import REGISTRY, default_model, default_text_model
    from clamp2_engine.cli.options import open_model
    from clamp2_engine.ingest.corpus import CorpusError, discover, find_metadata, load_metadata
    from clamp2_engine.ingest.pipeline import ingest_corpus
    from clamp2_engine.runlog import ErrorLog, RunSummary, console
    from clamp2_engine.store import CollectionError, model_source

    options = pop_model_options(kwargs)
    with store_client(kwargs) as store:
        _recorded_model(store, collection, options)  # takes the collection's lock: nothing is written before
        errors = ErrorLog(errors_path(collection), reset=True)
        items = None
        try:
            if summarize:
                meta_path = metadata or find_metadata(corpus.resolve())
                if meta_path is None:
                    raise click.UsageError(
                        "--summarize needs metadata: --metadata items.jsonl, or a corpus in the seed layout"
                    )
                items = _summarize(
                    load_metadata(Path(meta_path)),
                    collection,
                    summaries,
                    base_url,
                    llm,
                    api_key_env,
                    concurrency,
                    quiet or as_json,
                )
            found = discover(corpus, metadata=metadata, items=items, name=corpus_name, errors=errors)
        except CorpusError as exc:
            raise fail(exc) from None
        if not found.units:  # never mirror an empty (unmounted? mistyped?) folder into the collection
            hint = f"; problems: {errors.path}" if errors.count else ""
            raise click.ClickException(f"no music found in {corpus} ({found.layout} layout){hint}")
        need_text = any(u.summary for u in found.units)
        model = open_model(options, load_music=True, load_text=need_text)
        source = model_source(
            options.get("model") or default_model(),
            options.get("text_model") if (need_text or options.get("text_model")) else None,
        )
        if need_text and source["text_model"] is None and source["model"] not in REGISTRY:
            source["text_model"] = default_text_model()  # a known model's own text model is implied
        try:
            report = ingest_corpus(
                store,
                collection,
                found,
                model,
                source=source,
                render=render,
                write_batch=write_batch,
                errors=errors,
                progress=not (quiet or as_json),
                jobs=(os.cpu_count() or 1) if jobs is None else jobs,
                timeout=timeout,
                on_index=None if (quiet or as_json) else _say_indexing,
            )
        except CollectionError as exc:
            raise fail(exc) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; what was written is kept: re-run to finish") from None
        if as_json:
            click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        else:
            console.print(
                f"{found.name} ({found.layout} layout) -> collection {collection} on {store.describe()}",
                highlight=False,
            )
            summary = RunSummary("ingest", seconds=report.seconds)
            for key in ("units", "skipped", "embedded", "failed", "points", "removed"):
                summary.add(key, report.counts[key])
            summary.print(errors)
        if errors.count and as_json:
            console.print(
                f"{errors.count} problem(s) with {len(errors.sources)} input(s) logged in {errors.path}",
                highlight=False,
            )
    exit_for_failures(report.counts["failed"], allow_failures)


def errors_path(collection: str) -> Path:
    """Where ``ingest`` lists the problems of COLLECTION's inputs."""
    from clamp2_engine.paths import data_dir

    return data_dir() / "ingest" / f"{_file_name(collection)}.errors.jsonl"


def _say_indexing() -> None:
    from clamp2_engine.runlog import console

    console.print("building the search index (HNSW) ...", highlight=False)


def _recorded_model(store, collection: str, options: dict[str, Any]) -> None:
    """Fill unset model options from COLLECTION's record when the collection exists (opening it: a
    collection in use by another process is refused here, before any work)."""
    from clamp2_engine.search import with_record
    from clamp2_engine.store import CollectionError, CollectionNotFoundError, StoreError

    try:
        options.update(with_record(store.collection(collection).record, options))
    except CollectionNotFoundError:
        return
    except (CollectionError, StoreError) as exc:
        raise fail(exc) from None


def _summarize(
    items: list[dict[str, Any]],
    collection: str,
    out: Path | None,
    base_url: str | None,
    llm: str | None,
    api_key_env: str,
    concurrency: int,
    quiet: bool,
) -> list[dict[str, Any]]:
    """Items with summaries from the LLM (items that have ``summary_en`` already are not sent)."""
    from clamp2_engine.ingest.summarize import SummarizeError, fill_summaries
    from clamp2_engine.paths import data_dir
    from clamp2_engine.runlog import console

    if not base_url or not llm:
        raise click.UsageError("--summarize needs --base-url URL and --llm MODEL")
    out = out or data_dir() / "summaries" / f"{_file_name(collection)}.jsonl"
    options = {"base_url": base_url, "model": llm, "api_key_env": api_key_env, "concurrency": concurrency}
    try:
        merged, report = fill_summaries(items, out, **options, progress=not quiet)
    except SummarizeError as exc:
        raise click.ClickException(f"summarize: {exc} (finished summaries are kept in {out})") from None
    if report is not None and (report.failed or report.none):
        console.print(
            f"[yellow]{report.failed + report.none} item(s) got no summary; reasons in {report.errors_path}[/yellow]",
            highlight=False,
        )
    return merged


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
        click.option("-k", "--top-k", type=click.IntRange(1, 10_000), default=10, show_default=True),
        click.option(
            "--filter",
            "filters",
            multiple=True,
            metavar="KEY=VALUE",
            help="Payload filter, repeatable (all must hold): composer=Bach, genres=Folk,Jazz, "
            "corpus!=drafts.",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


class Searcher:
    """A collection and its query towers, loaded once, each when first needed."""

    def __init__(self, store, collection: str, options: dict[str, Any]):
        from clamp2_engine.search import QueryModels
        from clamp2_engine.store import CollectionError, StoreError

        try:
            self.collection = store.collection(collection)
        except (CollectionError, StoreError) as exc:
            raise fail(exc) from None
        self.options = options
        self.models = QueryModels(self.collection, options, loader=_cli_loader)

    def model(self, tower: str):
        """The model with the ``text`` or ``music`` tower, as the collection's record says to load it."""
        from clamp2_engine.store import ModelMismatchError

        try:
            return self.models[tower]
        except ModelMismatchError as exc:
            raise fail(exc) from None

    def vector(self, text: str | None = None, music: Path | None = None):
        if music is not None:
            from clamp2_engine.ingest.corpus import music_query_input

            try:
                _modality, data = music_query_input(music)
                return self.model("music").encode_music(data)
            except ValueError as exc:
                raise fail(exc) from None
        if not text or not text.strip():
            raise click.UsageError("give a QUERY text or --music FILE")
        model = self.model("text")
        threads = _query_threads() if (self.options.get("backend") or "torch") == "torch" else None
        with _torch_threads(threads):
            return model.encode_text(text)

    def search(self, query: Query) -> tuple[list[Any], str | None]:
        """The hits of ``query``, and why there are none when a filter is the reason."""
        try:
            vector = self.vector(query.text, query.music) if (query.text or query.music) else None
            return self.collection.find(vector, query)
        except ValueError as exc:
            raise fail(exc) from None


@dataclass
class Query:
    """One search as the user asked for it."""

    text: str | None = None
    music: Path | None = None
    modality: str = "any"
    k: int = 10
    filters: list[str] = field(default_factory=list)
    like: list[str] = field(default_factory=list)
    unlike: list[str] = field(default_factory=list)
    diverse: bool = False
    offset: int = 0


def _cli_loader(options: dict[str, Any], tower: str):
    from clamp2_engine.cli.options import open_model

    return open_model(options, load_music=tower == "music", load_text=tower == "text")


def _query_threads() -> int:
    """Intra-op threads for one short text query: $CLAMP2_QUERY_THREADS, default 1. A query of a few
    tokens gains little from more threads, and loses a lot to them on a busy machine."""
    try:
        return max(1, int(os.environ.get("CLAMP2_QUERY_THREADS", "1")))
    except ValueError:
        raise click.ClickException("CLAMP2_QUERY_THREADS must be a number of threads") from None


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``n`` for the block (``None``: left alone, e.g. under ONNX)."""
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    if n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _print_hits(hits, as_json: bool, title: str = "", why: str | None = None) -> None:
    if as_json:
        for h in hits:
            click.echo(dumps(h.as_dict()))
        if why:
            click.echo(f"no hits: {why}", err=True)
        return
    from rich.console import Console
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
    Console().print(table)
    if not hits:
        click.echo(f"no hits: {why}" if why else "no hits")


ABOUT_FIELDS = ("genre", "genres", "meter", "voices")


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
@click.option("--like", multiple=True, metavar="ID", help="More like this piece (a point id; repeatable).")
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
    like: tuple[str, ...],
    unlike: tuple[str, ...],
    diverse: bool,
    collection: str,
    modality: str,
    top_k: int,
    filters: tuple[str, ...],
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Search a collection by text in any language (QUERY), by a piece of music (--music FILE), or by
    pieces it holds (--like ID, --unlike ID).

    A text query loads only the text tower; --music only the music tower; --like alone no model.
    """
    if query is not None and music is not None:
        raise click.UsageError("give a QUERY text or --music FILE, not both")
    if query is None and music is None and not like:
        raise click.UsageError("give either a QUERY text, --music FILE or --like ID")
    if diverse and (like or unlike):
        raise click.UsageError("--diverse works with a QUERY or --music, not with --like / --unlike")
    request = Query(query, music, modality, top_k, list(filters), list(like), list(unlike), diverse)
    _check_filters(filters)  # before the store or a model is opened
    options = pop_model_options(kwargs)
    with store_client(kwargs) as store:
        searcher = Searcher(store, collection, options)
        hits, why = searcher.search(request)
        label = (
            printable(query) if query is not None else (music.name if music else "like " + ", ".join(like))
        )
        _print_hits(hits, as_json, title=f"{collection}: {label}", why=why)


def _check_filters(filters: tuple[str, ...] | list[str]) -> None:
    from clamp2_engine.store import parse_filters

    try:
        parse_filters(filters)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


SHELL_HELP = """\
type a text to search; commands:
  :music PATH       search by a piece of music (score, MIDI, .mtf)
  :k N              hits per query            :modality abc|mtf|text|any
  :filter KEY=VAL   add a filter              :filter        show filters     :clear   drop filters
  :json             toggle JSON output        :help          this text        :quit    leave (or Ctrl-D)"""


@click.command()
@_search_options
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON Lines.")
@store_options
@model_options()
def shell(
    collection: str, modality: str, top_k: int, filters: tuple[str, ...], as_json: bool, **kwargs: Any
) -> None:
    """An interactive search session: the model and the store are opened once."""

    _check_filters(filters)
    options = pop_model_options(kwargs)
    with store_client(kwargs) as store:
        searcher = Searcher(store, collection, options)
        searcher.model("text")
        state = {"k": top_k, "modality": modality, "filters": list(filters), "json": as_json}
        click.echo(f"{collection} on {store.describe()}; :help for commands", err=True)
        interactive = sys.stdin.isatty()
        if interactive:
            import readline  # noqa: F401 - line editing and history for input()
        while True:
            try:
                line = (input("search> ") if interactive else sys.stdin.readline() or _eof()).strip()
            except EOFError:
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
        path = Path(arg).expanduser()
        if not path.is_file():
            raise click.ClickException(f"no file {arg!r}")
        _shell_search(searcher, state, arg, music=path)
    elif cmd.startswith(":"):
        raise click.ClickException(f"unknown command {cmd} (:help lists them)")
    else:
        _shell_search(searcher, state, line, text=line)


def _shell_search(
    searcher: Searcher, state: dict[str, Any], label: str, text: str | None = None, music: Path | None = None
) -> None:
    started = time.perf_counter()
    query = Query(text, music, state["modality"], state["k"], list(state["filters"]))
    hits, why = searcher.search(query)
    ms = (time.perf_counter() - started) * 1000
    _print_hits(hits, state["json"], title=f"{printable(label)} ({ms:.0f} ms)", why=why)


# --- collections --------------------------------------------------------------------------------------


@click.group()
def collections() -> None:
    """List, inspect, optimize and drop collections."""


@collections.command("list")
@click.option("--json", "as_json", is_flag=True)
@store_options
def collections_list(as_json: bool, **kwargs: Any) -> None:
    """Collections in the store, with their sizes and models."""
    from rich.console import Console
    from rich.table import Table

    with store_client(kwargs) as store:
        rows = _or_fail(store.list)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title=f"collections ({store.describe()})")
    for col in ("name", "points", "model", "dim", "created"):
        table.add_column(col, justify="right" if col in ("points", "dim") else "left")
    for r in rows:
        points = "in use" if r["points"] is None else str(r["points"])
        table.add_row(r["name"], points, str(r["model"] or "-"), str(r["dim"] or "-"), r["created"] or "")
    Console().print(table)


def _or_fail(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, a store or collection error becoming the command's one-line error."""
    from clamp2_engine.store import CollectionError, StoreError

    try:
        return fn(*args)
    except (CollectionError, StoreError) as exc:
        raise fail(exc) from None


@collections.command("info")
@click.argument("name", callback=collection_name)
@click.option("--json", "as_json", is_flag=True)
@store_options
def collections_info(name: str, as_json: bool, **kwargs: Any) -> None:
    """The engine, counts, index state, disk size and model of collection NAME."""
    from rich.console import Console
    from rich.table import Table

    with store_client(kwargs) as store:
        info = _or_fail(lambda: store.collection(name).info())
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False))
        return
    table = Table(title=f"collection {name}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    model = info["model"]
    indexed = info.get("indexed_vectors")
    rows = [
        ("store", info["store"]),
        ("engine", info["engine"]),
        ("points", str(info["points"])),
        (
            "vectors",
            ", ".join(f"{k}: {v}" for k, v in info["vectors"].items()) + f" ({info['dim']}-d, cosine)",
        ),
        (
            "index",
            f"{indexed} vectors in HNSW, {info.get('segments')} segment(s)" if indexed is not None else "-",
        ),
        ("disk", f"{info['disk_bytes'] / 2**20:.1f} MiB" if "disk_bytes" in info else "-"),
        ("model", f"{model.get('name')} ({model.get('kind')}, sha256 {model.get('checkpoint_sha256')})"),
        ("model source", json.dumps(info["model_source"])),
        ("created", info["created"]),
        ("payload indexes", ", ".join(info["payload_indexes"]) or "none"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    Console().print(table)


@collections.command("optimize")
@click.argument("name", callback=collection_name)
@store_options
def collections_optimize(name: str, **kwargs: Any) -> None:
    """Build collection NAME's search index (HNSW) now; ingest does it at its end."""
    started = time.perf_counter()
    with store_client(kwargs) as store:
        coll = _or_fail(store.collection, name)
        click.echo(f"building the search index of {name} ...", err=True)
        changed = coll.optimize()
        indexed = coll.info().get("indexed_vectors")
    what = "optimized" if changed else "already optimal"
    click.echo(
        f"{name}: {what} in {time.perf_counter() - started:.1f} s ({indexed} vectors indexed)", err=True
    )


@collections.command("drop")
@click.argument("name", callback=collection_name)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@store_options
def collections_drop(name: str, yes: bool, **kwargs: Any) -> None:
    """Delete collection NAME and all its points."""
    with store_client(kwargs) as store:
        coll = _or_fail(store.collection, name)
        if not yes:
            click.confirm(f"drop collection {name!r} and its {coll.count()} points?", abort=True)
        _or_fail(store.drop, name)
    errors_path(name).unlink(missing_ok=True)  # its problems list goes with it
    click.echo(f"dropped {name}", err=True)


# --- migrate ------------------------------------------------------------------------------------------


@click.command()
@click.option("-c", "--collection", required=True, callback=collection_name, help="Collection to copy.")
@click.option("--to-url", default=None, metavar="URL", help="Target Qdrant server or cluster.")
@click.option(
    "--to-path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Target embedded store folder (Qdrant Edge).",
)
@click.option(
    "--from-local-mode",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Source: a folder written by clamp2-engine before Qdrant Edge (qdrant-client local mode).",
)
@click.option(
    "--to-api-key-env",
    default="QDRANT_API_KEY",
    show_default=True,
    metavar="VAR",
    help="Variable holding the target server's API key.",
)
@click.option(
    "--to-collection", default=None, callback=collection_name, help="Name in the target (default: the same)."
)
@click.option("--json", "as_json", is_flag=True)
@store_options
def migrate(
    collection: str,
    to_url: str | None,
    to_path: Path | None,
    from_local_mode: Path | None,
    to_api_key_env: str,
    to_collection: str | None,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Copy a collection (model record, vectors, payloads) to another store and verify it there: embedded
    to a Qdrant server, a server to a folder, or an old local-mode folder to Qdrant Edge. Safe to re-run:
    points keep their ids."""
    from clamp2_engine.cli.options import resolve_spec
    from clamp2_engine.runlog import progress_bar
    from clamp2_engine.store import Store, StoreSpec

    if (to_url is None) == (to_path is None):
        raise click.UsageError("give the target: --to-url URL or --to-path DIR")
    if from_local_mode is not None:
        if any(kwargs.get(k) for k in ("qdrant_path", "qdrant_url")):
            raise click.UsageError("--from-local-mode is the source: leave out --qdrant-path / --qdrant-url")
        src_spec = StoreSpec(path=from_local_mode, engine="local-mode")
    else:
        src_spec = resolve_spec(*(kwargs.get(k) for k in ("qdrant_path", "qdrant_url", "qdrant_api_key_env")))
    dst_spec = resolve_spec(to_path, to_url, to_api_key_env)
    if dst_spec == src_spec or (
        dst_spec.path and src_spec.path and dst_spec.path.resolve() == src_spec.path.resolve()
    ):
        raise click.UsageError("the target is the source store")
    with _or_fail(Store, src_spec) as src, _or_fail(Store, dst_spec) as dst:
        coll = _or_fail(src.collection, collection)
        total = coll.count()
        with progress_bar("migrate", total, enabled=not as_json and total > 0) as advance:
            target = _or_fail(coll.copy_to, dst, to_collection, 512, advance)
        n = target.count()
    result = {
        "collection": collection,
        "to": dst_spec.describe(),
        "target": target.name,
        "points": n,
        "verified": True,
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(
            f"copied {n} points of {collection} to {result['target']} on {result['to']} (verified)", err=True
        )
