"""``ingest``: a corpus into a collection (light at import time: torch, Qdrant and the pipeline are
imported inside the command)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from clamp2_engine.cli.options import (
    EXIT_CODES,
    allow_failures_option,
    collection_name,
    exit_for_failures,
    fail,
    interrupted,
    model_options,
    pop_model_options,
    quantization_option,
    store_client,
    store_options,
)

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
    type=click.IntRange(0, 1_000_000),
    default=None,
    help="Scores converted at once: worker processes (default: CPU count; 0: in this process, no time "
    "limit), or with --runner ray conversion tasks (default: as Ray schedules them).",
)
@click.option(
    "--convert-timeout",
    "timeout",
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
    "--llm-api-key-env",
    "api_key_env",
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
@click.option(
    "--runner",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process and its worker pool; ray: Ray Data on a local Ray or a cluster (the [ray] extra).",
)
@click.option(
    "--ray-address",
    default=None,
    metavar="auto|ray://HOST:10001",
    help="With --runner ray: the cluster to join; default: a local Ray started for this run.",
)
@click.option(
    "--embed-workers",
    type=click.IntRange(1, 4096),
    default=1,
    show_default=True,
    help="With --runner ray: actors embedding, each holding the model.",
)
@click.option(
    "--num-gpus-per-worker",
    type=click.FloatRange(0, 64),
    default=0.0,
    show_default=True,
    help="With --runner ray: GPUs each embedding actor asks for (fractions share a GPU).",
)
@quantization_option(
    "A new collection's vectors: a compressed copy in RAM (int8, turbo4: 4-bit, binary) searched and "
    "rescored against the originals on disk, or none (float32 in RAM). Default: int8. An existing "
    "collection keeps its own (collections optimize --quantization converts it)."
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
    runner: str,
    ray_address: str | None,
    embed_workers: int,
    num_gpus_per_worker: float,
    quantization: str | None,
    as_json: bool,
    quiet: bool,
    allow_failures: bool,
    **kwargs: Any,
) -> None:
    """Index the music of CORPUS into a Qdrant collection (re-runs embed only what changed).

    CORPUS is a folder of scores (.xml .mxl .abc .krn ...), MIDI and .mtf files, or the seed layout
    (abc/, mtf/ and a JSONL of items with `filepaths` and `summary_en`).
    """
    from clamp2_engine.ingest.run import IngestOptions, SummaryOptions

    if summarize and (not base_url or not llm):
        raise click.UsageError("--summarize needs --base-url URL and --llm MODEL")
    if summarize and metadata is None:
        from clamp2_engine.ingest.corpus import CorpusError, find_metadata

        try:
            found = find_metadata(corpus.resolve())
        except CorpusError as exc:  # several JSONL files: which one is the user's to say
            raise fail(exc) from None
        if found is None:
            raise click.UsageError(
                "--summarize needs metadata: --metadata items.jsonl, or a corpus in the seed layout"
            )
    ray = None
    if runner == "ray":
        from clamp2_engine.ingest.ray_engine import RayOptions

        ray = RayOptions(ray_address, embed_workers, jobs or None, num_gpus_per_worker)
    quiet = quiet or as_json
    options = IngestOptions(
        metadata=metadata,
        corpus_name=corpus_name,
        render=render,
        write_batch=write_batch,
        jobs=jobs,
        timeout=timeout,
        summaries=SummaryOptions(base_url, llm, api_key_env, concurrency, summaries) if summarize else None,  # type: ignore[arg-type]
        model=pop_model_options(kwargs),
        ray=ray,
        progress=not quiet,
        on_index=None if quiet else say_indexing,
        on_summary_problems=_say_summary_problems,
        quantization=quantization,
    )
    with store_client(kwargs) as store:
        done = run_ingest(store, corpus, collection, options, runner, as_json)
    exit_for_failures(done.report.counts["failed"], allow_failures)


def run_ingest(store, corpus: Path, collection: str, options, runner: str = "local", as_json: bool = False):
    """:func:`clamp2_engine.ingest.run.run` with its errors as one-line messages and its outcome printed
    (a Rich summary, or JSON); ``ingest`` and ``demo`` share it."""
    from clamp2_engine.checkpoints import CheckpointError, ModelNotFoundError
    from clamp2_engine.ingest.corpus import CorpusError
    from clamp2_engine.ingest.run import run
    from clamp2_engine.ingest.summarize import SummarizeError
    from clamp2_engine.runlog import RunSummary, console
    from clamp2_engine.store import CollectionError, StoreError

    if options.progress:  # a word within a second: reading the folder and loading the model take a while
        console.print(
            f"ingest {corpus} -> {collection}: reading the folder, loading the model ...", style="dim"
        )
    try:
        done = run(store, corpus, collection, options, runner)  # type: ignore[arg-type]
    except (CorpusError, CollectionError, StoreError, SummarizeError) as exc:
        raise fail(exc) from None
    except (ModelNotFoundError, CheckpointError, ValueError, RuntimeError, OSError) as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        interrupted("what was written is kept: re-run to finish")
    report, errors = done.report, done.errors
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        where = f"{done.corpus.name} ({done.corpus.layout} layout) -> collection {collection} on {store.describe()}"
        console.print(where, highlight=False)
        summary = RunSummary("ingest", seconds=report.seconds)
        for key in ("units", "skipped", "embedded", "failed"):
            summary.add(key, report.counts[key])
        summary.add("points written", report.counts["points"])
        summary.add("points removed", report.counts["removed"])
        if report.total_points is not None:
            summary.add("points in the collection", report.total_points)
        if report.precision:
            summary.note("precision", report.precision)
        summary.print(errors)
    if errors.count and as_json:
        console.print(
            f"{errors.count} problem(s) with {len(errors.sources)} input(s) logged in {errors.path}",
            highlight=False,
        )
    from clamp2_engine.cli.prepare import prepare_query_model

    store.backend.release(collection)  # the export reads the record only; other commands may open it
    prepare_query_model(store, collection, lambda m: console.print(m, highlight=False, style="dim"))
    return done


def say_indexing() -> None:
    from clamp2_engine.runlog import console

    console.print("building the search index (HNSW) ...", highlight=False)


def _say_summary_problems(n: int, path: Path) -> None:
    from clamp2_engine.runlog import console

    console.print(f"[yellow]{n} item(s) got no summary; reasons in {path}[/yellow]", highlight=False)
