"""``run``: a folder of music into a collection, the one entry point of both runners (what ``ingest`` and
``demo`` call): the collection's recorded model, optional LLM summaries, discovery, the empty-corpus
guard, which towers to load, the model's source record, then :func:`.pipeline.ingest_corpus` (this
process and its worker pool) or :func:`.ray_engine.ingest_corpus_ray` (Ray Data)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from clamp2_engine.ingest.corpus import Corpus, CorpusError, discover, find_metadata, load_metadata
from clamp2_engine.ingest.pipeline import DEFAULT_TIMEOUT, DEFAULT_WRITE_BATCH, IngestReport, ingest_corpus
from clamp2_engine.loading import LoadOptions
from clamp2_engine.paths import data_dir
from clamp2_engine.pretrained import load
from clamp2_engine.runlog import ErrorLog
from clamp2_engine.store import CollectionNotFoundError, Store, model_source

Runner = Literal["local", "ray"]  # where ingest runs: this process and its pool, or Ray Data


@dataclass(frozen=True)
class SummaryOptions:
    """LLM summaries of the metadata before ingesting (they become ``text`` vectors)."""

    base_url: str
    llm: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    out: Path | None = None  # default: <data dir>/summaries/COLLECTION.jsonl


@dataclass(frozen=True)
class IngestOptions:
    """How a corpus is ingested; ``model`` holds the model options (``CLaMP2.from_pretrained``'s, with
    ``model`` and ``text_model``), filled from the collection's record when it exists."""

    metadata: Path | None = None
    corpus_name: str | None = None
    render: bool = True
    write_batch: int = DEFAULT_WRITE_BATCH
    jobs: int | None = None  # local runner: conversion workers (default: CPU count; 0: in this process)
    timeout: float | None = DEFAULT_TIMEOUT
    summaries: SummaryOptions | None = None
    model: LoadOptions = field(default_factory=LoadOptions)
    ray: Any = None  # ray runner: a ray_engine.RayOptions
    progress: bool = True
    on_index: Callable[[], None] | None = None  # called before the search index is built
    on_summary_problems: Callable[[int, Path], None] | None = None  # items without a summary, their log
    quantization: str | None = None  # a new collection's vectors (None: the default); checked on an old one


@dataclass
class IngestRun:
    """What :func:`run` did: the corpus found, the pipeline's report, the problems log."""

    corpus: Corpus
    report: IngestReport
    errors: ErrorLog


def _file_name(collection: str) -> str:
    """``collection`` made safe as a file name."""
    return re.sub(r"[^\w.-]", "_", collection).lstrip(".") or "collection"


def errors_path(collection: str) -> Path:
    """Where ingest lists the problems of ``collection``'s inputs."""
    return data_dir() / "ingest" / f"{_file_name(collection)}.errors.jsonl"


def run(
    store: Store, corpus: Path, collection: str, options: IngestOptions, runner: Runner = "local"
) -> IngestRun:
    """Bring ``collection`` of ``store`` in step with the music of folder ``corpus`` (see the module
    docstring). Raises :class:`CorpusError` for a corpus that cannot be read or holds no music,
    :class:`~clamp2_engine.ingest.summarize.SummarizeError` when the LLM cannot be used, and the store's
    and model loader's own errors."""
    options = replace(options, model=_recorded_model(store, collection, options.model))  # takes the lock
    errors = ErrorLog(errors_path(collection), reset=True)
    items = _summaries(corpus, collection, options) if options.summaries else None
    found = discover(corpus, metadata=options.metadata, items=items, name=options.corpus_name, errors=errors)
    if not found.units:  # never mirror an empty (unmounted? mistyped?) folder into the collection
        hint = f"; problems: {errors.path}" if errors.count else ""
        raise CorpusError(f"no music found in {corpus} ({found.layout} layout){hint}")
    need_text = any(u.summary for u in found.units)
    model_options = replace(options.model, towers=("music", "text") if need_text else ("music",))
    model = load(model_options)
    common = dict(
        source=_source(options.model, need_text),
        render=options.render,
        write_batch=options.write_batch,
        errors=errors,
        progress=options.progress,
        timeout=options.timeout,
        on_index=options.on_index,
        quantization=options.quantization,
    )
    if runner == "ray":
        from clamp2_engine.ingest.ray_engine import ingest_corpus_ray

        report = ingest_corpus_ray(
            store,
            collection,
            found,
            model_options,
            model.identity,
            ray_options=options.ray,
            **common,
        )
    else:
        jobs = (os.cpu_count() or 1) if options.jobs is None else options.jobs
        report = ingest_corpus(store, collection, found, model, jobs=jobs, **common)
    return IngestRun(found, report, errors)


def _recorded_model(store: Store, collection: str, model: LoadOptions) -> LoadOptions:
    """Unset model options taken from ``collection``'s record when it exists (opening it: a collection
    another process uses is refused here, before any work)."""
    try:
        return LoadOptions.of(model).with_record(store.collection(collection).record)
    except CollectionNotFoundError:
        return LoadOptions.of(model)


def _source(model: LoadOptions, need_text: bool) -> dict[str, Any]:
    """How to load the model again, as the collection records it."""
    from clamp2_engine.checkpoints import REGISTRY, default_model

    source = model_source(
        model.model or default_model(), model.text_model if (need_text or model.text_model) else None
    )
    if need_text and source["text_model"] is None and source["model"] not in REGISTRY:
        # a known model's text model is implied, and so is the one a checkpoint written by `train`
        # names; a text model chosen by the environment is recorded
        source["text_model"] = os.environ.get("CLAMP2_TEXT_MODEL") or None
    return source


def _summaries(corpus: Path, collection: str, options: IngestOptions) -> list[dict[str, Any]]:
    """The corpus's metadata items with summaries from the LLM (items that have ``summary_en`` already are
    not sent)."""
    from clamp2_engine.ingest.summarize import SummarizeError, fill_summaries

    s = options.summaries
    assert s is not None
    meta_path = options.metadata or find_metadata(corpus.resolve())
    if meta_path is None:
        raise CorpusError("summaries need metadata: an items.jsonl beside the corpus (seed layout), or given")
    out = s.out or data_dir() / "summaries" / f"{_file_name(collection)}.jsonl"
    llm = {"base_url": s.base_url, "model": s.llm, "api_key_env": s.api_key_env, "concurrency": s.concurrency}
    try:
        merged, report = fill_summaries(load_metadata(Path(meta_path)), out, **llm, progress=options.progress)
    except SummarizeError as exc:
        raise SummarizeError(f"summarize: {exc} (finished summaries are kept in {out})") from None
    if report is not None and (report.failed or report.none) and options.on_summary_problems:
        options.on_summary_problems(report.failed + report.none, report.errors_path)
    return merged
