"""``ingest``: a corpus into a collection (light at import time: torch, Qdrant and the pipeline are
imported inside the command)."""

from __future__ import annotations

import json
import os
import re
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
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process and its worker pool; ray: Ray Data on a local Ray or a cluster (the [ray] extra).",
)
@click.option(
    "--ray-address",
    default=None,
    metavar="auto|ray://HOST:10001",
    help="With --engine ray: the cluster to join; default: a local Ray started for this run.",
)
@click.option(
    "--embed-workers",
    type=click.IntRange(1, 4096),
    default=1,
    show_default=True,
    help="With --engine ray: actors embedding, each holding the model.",
)
@click.option(
    "--convert-workers",
    type=click.IntRange(1, 1_000_000),
    default=None,
    help="With --engine ray: conversion tasks at once (default: as Ray schedules them).",
)
@click.option(
    "--num-gpus-per-worker",
    type=click.FloatRange(0, 64),
    default=0.0,
    show_default=True,
    help="With --engine ray: GPUs each embedding actor asks for (fractions share a GPU).",
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
    engine: str,
    ray_address: str | None,
    embed_workers: int,
    convert_workers: int | None,
    num_gpus_per_worker: float,
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
        common = dict(
            source=source,
            render=render,
            write_batch=write_batch,
            errors=errors,
            progress=not (quiet or as_json),
            timeout=timeout,
            on_index=None if (quiet or as_json) else _say_indexing,
        )
        try:
            if engine == "ray":
                from clamp2_engine.ingest.ray_engine import RayOptions, ingest_corpus_ray

                ray_options = RayOptions(ray_address, embed_workers, convert_workers, num_gpus_per_worker)
                actor_options = {**options, "load_text": need_text}
                report = ingest_corpus_ray(
                    store, collection, found, actor_options, model.identity, ray_options=ray_options, **common
                )
            else:
                jobs = (os.cpu_count() or 1) if jobs is None else jobs
                report = ingest_corpus(store, collection, found, model, jobs=jobs, **common)
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
