"""``ingest --runner ray``: the same ingest as :func:`~clamp2_engine.ingest.pipeline.ingest_corpus`, its
conversion and embedding spread over a Ray cluster (or a local Ray) with Ray Data.

The driver plans (hashes, skips unchanged units, deletes vanished ones) and writes, exactly as the
single-process ingest does; in between, a Ray Data pipeline converts units in CPU tasks and embeds them in
an actor pool that holds the model once per actor (``num_gpus`` each when the cluster has GPUs). Results
come back to the driver a write batch at a time and are upserted there, so the embedded store (one
process) and a Qdrant server work alike, and a killed run loses at most the batches in flight: the next
run, with either engine, skips what was written.

Ray is imported only here, and only when this engine runs.
"""

from __future__ import annotations

import pickle
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from clamp2_engine.errors import require_extra
from clamp2_engine.ingest.corpus import Corpus, PieceInput, Unit, prepare_unit
from clamp2_engine.ingest.pipeline import (
    DEFAULT_TIMEOUT,
    DEFAULT_WRITE_BATCH,
    IngestReport,
    Log,
    _log,
    _log_problems,
    embed_units,
    finish_ingest,
    plan_ingest,
    write_units,
)
from clamp2_engine.loading import LoadOptions
from clamp2_engine.runlog import ErrorLog, progress_bar
from clamp2_engine.store import Store


@dataclass
class RayOptions:
    """Where and how wide the pipeline runs."""

    address: str | None = None  # None: a local Ray for this run; "auto" or "ray://host:10001": a cluster
    embed_workers: int = 1  # actors, each holding the model
    convert_workers: int | None = None  # concurrent conversion tasks (None: as Ray sees fit)
    num_gpus_per_worker: float = 0.0


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """SIGALRM raises ``TimeoutError`` after ``seconds`` (Ray runs a task in its worker's main thread)."""
    if not seconds:
        yield
        return

    def expired(_signum, _frame):
        raise TimeoutError(f"conversion timed out after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def convert_row(row: dict[str, Any], render: bool, timeout: float | None) -> dict[str, Any]:
    """One unit (pickled in ``row["unit"]``) -> its pieces and the problems met, pickled."""
    unit: Unit = pickle.loads(row["unit"])
    try:
        with _time_limit(timeout):
            pieces, problems = prepare_unit(unit, render)
    except TimeoutError as exc:  # raised outside a conversion step: the whole unit failed
        pieces, problems = [], [(unit.label, "timeout", str(exc))]
    return {
        "i": row["i"],
        "unit": row["unit"],
        "pieces": pickle.dumps(pieces),
        "problems": pickle.dumps(problems),
    }


class Embedder:
    """A Ray Data actor: the model loaded once, then batches of converted units -> their vectors (and the
    inputs it could not embed, to be logged by the driver)."""

    def __init__(self, options: LoadOptions):
        from clamp2_engine.pretrained import load

        self.model = load(options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prepared = [
            (pickle.loads(u), pickle.loads(p)) for u, p in zip(batch["unit"], batch["pieces"], strict=True)
        ]
        logged: dict[str, list[tuple[str, str]]] = {unit.key: [] for unit, _ in prepared}
        vectors = embed_units(
            self.model, prepared, lambda unit, stage, reason: logged[unit.key].append((stage, reason))
        )
        return {
            "i": batch["i"],
            "pieces": batch["pieces"],
            "problems": batch["problems"],
            "vectors": _objects(pickle.dumps(v) for v in vectors),
            "logged": _objects(pickle.dumps(logged[unit.key]) for unit, _ in prepared),
        }


def _objects(values) -> np.ndarray:
    values = list(values)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def ingest_corpus_ray(
    store: Store,
    collection: str,
    corpus: Corpus,
    model_options: LoadOptions,
    identity: Any,
    *,
    ray_options: RayOptions | None = None,
    source: dict[str, Any] | None = None,
    render: bool = True,
    write_batch: int = DEFAULT_WRITE_BATCH,
    errors: ErrorLog | None = None,
    progress: bool = True,
    timeout: float | None = DEFAULT_TIMEOUT,
    on_index: Callable[[], None] | None = None,
    quantization: str | None = None,
) -> IngestReport:
    """Bring ``collection`` in step with ``corpus`` on Ray (see the module docstring). ``model_options``
    are what each actor loads the model with (:func:`clamp2_engine.pretrained.load`);
    ``identity`` is that model's, loaded once on the driver to check the collection."""
    require_extra("ray")
    import ray

    opts = ray_options or RayOptions()
    precision = model_options.precision()  # the driver's view: workers on other CPUs may differ
    source = {**(source or {}), "dtype": precision}
    plan = plan_ingest(
        store,
        collection,
        corpus,
        identity,
        source=source,
        render=render,
        errors=errors,
        quantization=quantization,
    )
    plan.report.precision = precision
    if not plan.pending:
        return finish_ingest(plan, on_index)
    log: Log = partial(_log, errors)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=opts.address, log_to_driver=False, include_dashboard=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        rows = [{"i": i, "unit": pickle.dumps(u)} for i, u in enumerate(plan.pending)]
        blocks = max(1, min(len(rows), -(-len(rows) // max(1, write_batch)) * 2))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        ds = ds.map(
            convert_row, fn_kwargs={"render": render, "timeout": timeout}, concurrency=opts.convert_workers
        )
        ds = ds.map_batches(
            Embedder,
            fn_constructor_kwargs={"options": model_options},
            batch_size=max(1, write_batch),
            concurrency=max(1, opts.embed_workers),
            num_gpus=opts.num_gpus_per_worker or None,
        )
        with progress_bar(f"ingest {corpus.name} (ray)", len(rows), enabled=progress) as advance:
            for batch in ds.iter_batches(batch_size=max(1, write_batch), batch_format="numpy"):
                prepared: list[tuple[Unit, list[PieceInput]]] = []
                vectors = []
                for k, i in enumerate(batch["i"]):
                    unit = plan.pending[int(i)]
                    _log_problems(errors, pickle.loads(batch["problems"][k]), unit)
                    for stage, reason in pickle.loads(batch["logged"][k]):
                        log(unit, stage, reason)
                    prepared.append((unit, pickle.loads(batch["pieces"][k])))
                    vectors.append(pickle.loads(batch["vectors"][k]))
                write_units(plan, prepared, vectors, identity, log)
                counts = plan.report.counts
                advance(len(prepared), note=f"{counts['points']} pieces written, {counts['failed']} failed")
    finally:
        if started_ray:
            ray.shutdown()
    return finish_ingest(plan, on_index)
