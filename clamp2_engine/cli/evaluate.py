"""``eval``, ``score`` and ``classify``: retrieval metrics, the CLaMP 2 score and linear probes.

Light at import time: numpy, torch and matplotlib are imported inside the commands.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clamp2_engine.cli import plots
from clamp2_engine.cli.options import STORE_OPTION_NAMES, fail, resolve_spec, store_options, table_console
from clamp2_engine.runlog import ErrorLog, console, progress_bar

DIR = click.Path(exists=True, file_okay=False, path_type=Path)
OUT_FILE = click.Path(dir_okay=False, writable=True, path_type=Path)


def _stdout() -> Console:
    return table_console()


def _show_errors(errors: Sequence[tuple[str, str]], log: ErrorLog | None = None, stage: str = "load") -> None:
    """Print the first few per-file problems on stderr (and log all of them when ``log`` is given)."""
    for source, reason in errors:
        if log is not None:
            log.add(source, stage, reason)
    for source, reason in errors[:10]:
        console.print(f"[yellow]skipped[/yellow] {escape(source)}: {escape(reason)}", highlight=False)
    if len(errors) > 10:
        console.print(f"[yellow]... and {len(errors) - 10} more[/yellow]")
    if log is not None and errors:
        console.print(f"[yellow]{len(errors)} skipped file(s); reasons in {escape(str(log.path))}[/yellow]")


def _error_dicts(errors: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"source": s, "reason": r} for s, r in errors]


def _metrics_table(title: str, metrics: dict[str, Any], decimals: int) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.{decimals}f}" if isinstance(value, float) else str(value))
    return table


def _write_jsonl(path: Path, records) -> None:
    from clamp2_engine.paths import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


# --- eval -------------------------------------------------------------------------------------------


@click.command("eval")
@click.argument("query_dir", required=False, type=DIR)
@click.argument("ref_dir", required=False, type=DIR)
@click.option(
    "--ties",
    type=click.Choice(["reference", "pessimistic"]),
    default="reference",
    show_default=True,
    help="reference: ties go to the true item (as CLaMP 2); pessimistic: ties count against it.",
)
@click.option("--ranks", "ranks_out", type=OUT_FILE, help="Write one JSON line per query with its rank.")
@click.option("-c", "--collection", help="Evaluate text-to-music retrieval through this Qdrant collection.")
@click.option(
    "--queries",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="items.jsonl whose texts are the queries (with --collection).",
)
@click.option("--field", default="summary_en", show_default=True, help="Item field used as the query text.")
@click.option(
    "--modality",
    type=click.Choice(["abc", "mtf"]),
    default="abc",
    show_default=True,
    help="Which music vectors of the collection answer the queries.",
)
@click.option(
    "--mode",
    type=click.Choice(["semantic", "hybrid", "lexical"]),
    default="semantic",
    show_default=True,
    help="How the query texts are matched (with --collection). semantic measures the model; hybrid and "
    "lexical add the pieces' words (titles, summaries), which item summaries used as queries contain.",
)
@click.option(
    "-k",
    "--top-k",
    "k",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Hits fetched per query (with --collection).",
)
@click.option(
    "--corpus", help="Corpus name the items were ingested under; default: the folder of items.jsonl."
)
@click.option("--plot", type=OUT_FILE, help="Save a histogram of the ranks (PNG; needs matplotlib).")
@click.option("--decimals", type=click.IntRange(0, 12), default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@store_options
def eval_cmd(
    query_dir: Path | None,
    ref_dir: Path | None,
    ties: str,
    ranks_out: Path | None,
    collection: str | None,
    queries: Path | None,
    field: str,
    modality: str,
    mode: str,
    k: int,
    corpus: str | None,
    plot: Path | None,
    decimals: int,
    as_json: bool,
    **store_kwargs: Any,
) -> None:
    """Retrieval metrics (MRR, Hit@1/10/100) of QUERY_DIR features against REF_DIR features.

    Files are paired by key (the file name up to its first '.'); cosine similarity. With
    --collection NAME --queries items.jsonl, each item's text searches the collection and its own
    piece is the answer.
    """
    if collection is not None:
        if query_dir is not None or ref_dir is not None:
            raise click.UsageError("give either QUERY_DIR REF_DIR or --collection, not both")
        if queries is None:
            raise click.UsageError("--collection needs --queries items.jsonl")
        store = _store_spec(store_kwargs)
        _eval_collection(
            collection, queries, field, modality, k, corpus, ranks_out, plot, decimals, as_json, store, mode
        )
        return
    if query_dir is None or ref_dir is None:
        raise click.UsageError("give QUERY_DIR and REF_DIR (or --collection NAME --queries items.jsonl)")

    from clamp2_engine.evaluate import evaluate_folders, round_metrics

    try:
        result = evaluate_folders(query_dir, ref_dir, ties=ties)  # type: ignore[arg-type]
    except (ValueError, FileNotFoundError) as exc:
        raise fail(exc) from exc
    errors = [*result.query.errors, *result.reference.errors]
    _show_errors(errors)
    if not result.keys:
        raise click.ClickException(
            f"no common keys: {len(result.query)} query and {len(result.reference)} reference features "
            "(files pair by the name up to its first '.')"
        )
    if ranks_out:
        _write_jsonl(ranks_out, result.rank_records())
    if plot:
        plots.plot_ranks(plot, result.ranks.ranks.tolist(), f"{query_dir.name} vs {ref_dir.name}")
    metrics = round_metrics(result.metrics, decimals)
    extra = {
        "ties": ties,
        "query_only": result.unmatched_query,
        "reference_only": result.unmatched_reference,
        "mean_pooled": result.query.mean_pooled + result.reference.mean_pooled,
    }
    if as_json:
        click.echo(json.dumps({**metrics, **extra, "errors": _error_dicts(errors)}))
        return
    out = _stdout()
    out.print(_metrics_table(f"Retrieval ({ties} ties)", metrics, decimals))
    if extra["query_only"] or extra["reference_only"]:
        out.print(f"unpaired: {extra['query_only']} query and {extra['reference_only']} reference file(s)")
    if extra["mean_pooled"]:
        out.print(f"{extra['mean_pooled']} raw [L, H] feature(s) were mean-pooled over L")


def _store_spec(store_kwargs: dict[str, Any]):
    """The Qdrant store named by --qdrant-path / --qdrant-url (env defaults), or a one-line error."""
    return resolve_spec(*(store_kwargs.get(k) for k in STORE_OPTION_NAMES))


def _eval_collection(
    collection: str,
    queries: Path,
    field: str,
    modality: str,
    k: int,
    corpus: str | None,
    ranks_out: Path | None,
    plot: Path | None,
    decimals: int,
    as_json: bool,
    store: Any = None,
    mode: str = "semantic",
) -> None:
    from clamp2_engine.evaluate import evaluate_collection, read_jsonl, round_metrics
    from clamp2_engine.ingest.items import item_point_id
    from clamp2_engine.search.session import text_search_fn

    items, bad_lines = read_jsonl(queries)
    _show_errors(bad_lines)
    root = queries.resolve().parent

    corpus_name = corpus or root.name
    search_fn = None
    try:
        search_fn = text_search_fn(collection, modality=modality, limit=k, store=store, mode=mode)
        units = search_fn.collection.unit_states(corpus_name)
        if not units:
            raise click.ClickException(
                f"collection {collection!r} holds no piece of corpus {corpus_name!r}: pass --corpus NAME "
                "(the name given to `ingest --corpus-name`, by default the ingested folder's name)"
            )

        def id_fn(item: dict[str, Any]):
            return item_point_id(item, modality=modality, root=root, corpus=corpus_name, units=units)

        with progress_bar("queries", total=len(items), enabled=not as_json) as advance:
            result = evaluate_collection(search_fn, items, field=field, id_fn=id_fn, k=k, progress=advance)
    except (ValueError, LookupError, OSError, RuntimeError) as exc:
        raise fail(exc) from exc
    finally:
        if search_fn is not None and callable(getattr(search_fn, "close", None)):
            search_fn.close()
    _show_errors(result.skipped)
    if not result.queries:
        raise click.ClickException(f"no item of {queries} has text in field {field!r}")
    if ranks_out:
        _write_jsonl(ranks_out, result.rank_records())
    if plot:
        plots.plot_ranks(plot, result.ranks, f"{collection}: {field} -> {modality}")
    metrics = round_metrics(result.metrics, decimals)
    if as_json:
        click.echo(
            json.dumps(
                {
                    **metrics,
                    "collection": collection,
                    "field": field,
                    "modality": modality,
                    "skipped": len(result.skipped),
                    "errors": _error_dicts([*bad_lines, *result.skipped]),
                }
            )
        )
        return
    _stdout().print(_metrics_table(f"Text-to-music retrieval ({field} -> {modality})", metrics, decimals))


# --- score ------------------------------------------------------------------------------------------


@click.command()
@click.argument("ref_dir", type=DIR)
@click.argument("test_dir", type=DIR)
@click.option("--decimals", type=click.IntRange(0, 12), default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def score(ref_dir: Path, test_dir: Path, decimals: int, as_json: bool) -> None:
    """CLaMP 2 score: cosine similarity of the mean features of REF_DIR and TEST_DIR."""
    from clamp2_engine.evaluate import clamp2_score, round_metrics

    try:
        result = clamp2_score(ref_dir, test_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(exc) from exc
    errors = result.pop("errors")
    _show_errors(errors)
    result = round_metrics(result, decimals)
    if as_json:
        click.echo(json.dumps({**result, "errors": _error_dicts(errors)}))
        return
    _stdout().print(_metrics_table("CLaMP 2 score", result, decimals))


# --- classify ---------------------------------------------------------------------------------------


@click.group()
def classify() -> None:
    """Linear probes on raw features (files named LABEL_rest.npy): train, predict."""


def _confusion_table(metrics: dict[str, Any]) -> Table:
    labels = metrics["labels"]
    table = Table(title="Confusion matrix")
    table.add_column("true \\ predicted")
    for lab in labels:
        table.add_column(escape(lab), justify="right")
    for r, (lab, row) in enumerate(zip(labels, metrics["confusion"], strict=True)):
        table.add_row(escape(lab), *(f"[bold]{n}[/bold]" if c == r else str(n) for c, n in enumerate(row)))
    return table


@classify.command("train")
@click.argument("features_dirs", nargs=-1, required=True, type=DIR)
@click.option("--out", required=True, type=OUT_FILE, help="Where to save the probe (.pt).")
@click.option(
    "--eval-dir",
    "eval_dirs",
    multiple=True,
    type=DIR,
    help="Evaluation features (repeatable); default: hold out --eval-split of the training files.",
)
@click.option("--balanced", is_flag=True, help="Undersample every label to the rarest one, anew each epoch.")
@click.option("--epochs", type=click.IntRange(min=1), default=1000, show_default=True, help="Maximum epochs.")
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Stop after this many epochs without a better evaluation accuracy.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-5,
    show_default=True,
    help="AdamW learning rate (the reference's).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Files per step (the reference uses 1; larger is faster, may need a larger --lr).",
)
@click.option(
    "--eval-split", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--plot", type=OUT_FILE, help="Save the confusion matrix (PNG; needs matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def classify_train(
    features_dirs: tuple[Path, ...],
    out: Path,
    eval_dirs: tuple[Path, ...],
    balanced: bool,
    epochs: int,
    patience: int,
    lr: float,
    batch_size: int,
    eval_split: float,
    seed: int,
    device: str,
    plot: Path | None,
    as_json: bool,
) -> None:
    """Train a linear probe on FEATURES_DIR... and report accuracy, macro F1 and a confusion matrix."""
    from clamp2_engine import probe as P

    log = ErrorLog(out.with_name(out.name + ".errors.jsonl"))
    train_files, errors = P.scan_features(features_dirs)
    if not train_files:
        _show_errors(errors, log)
        raise click.ClickException("no usable training features")
    eval_files = None
    if eval_dirs:
        eval_files, eval_errors = P.scan_features(eval_dirs, hidden=train_files[0].hidden)
        eval_files, unknown = P.known_labels(eval_files, train_files)
        errors += eval_errors + unknown
    _show_errors(errors, log)
    config = P.ProbeConfig(
        lr=lr,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        balanced=balanced,
        eval_split=eval_split,
        seed=seed,
        device=device,
    )
    with progress_bar("epochs", total=epochs, enabled=not as_json) as advance:
        try:
            result = P.train_probe(train_files, eval_files, config, on_epoch=lambda *_: advance())
        except (ValueError, RuntimeError) as exc:  # FeatureError is a ValueError; bad --device a RuntimeError
            raise fail(exc) from exc
    P.save_probe(result, out)
    m = result.metrics
    if plot:
        plots.plot_confusion(
            plot, m["confusion"], m["labels"], f"probe {out.name}: accuracy {m['accuracy']:.3f}"
        )
    if as_json:
        click.echo(
            json.dumps({"probe": str(out), **m, "skipped": len(errors), "errors": _error_dicts(errors)})
        )
        return
    con = _stdout()
    summary = {
        "accuracy": m["accuracy"],
        "macro F1": m["macro_f1"],
        "best epoch": m["best_epoch"],
        "epochs run": m["epochs_run"],
        "train files": m["train_files"],
        "eval files": m["eval_files"],
        "labels": len(m["labels"]),
    }
    con.print(_metrics_table("Linear probe", summary, 4))
    con.print(_confusion_table(m))


@classify.command("predict")
@click.argument("features_dir", type=DIR)
@click.option(
    "--probe", "probe_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--out", required=True, type=OUT_FILE, help="predictions.json: {path: label}.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print label counts as JSON.")
def classify_predict(
    features_dir: Path, probe_path: Path, out: Path, batch_size: int, device: str, as_json: bool
) -> None:
    """Label every feature file under FEATURES_DIR with a trained probe; write {path: label} to --out."""
    from clamp2_engine import probe as P
    from clamp2_engine.paths import atomic_write_text, iter_files

    try:
        probe = P.load_probe(probe_path)
    except ValueError as exc:
        raise fail(exc) from exc
    files = list(iter_files(features_dir, {".npy"}))
    with progress_bar(
        "predict", total=len(files), enabled=not as_json and len(files) > batch_size
    ) as advance:
        try:
            predictions, errors = P.predict(
                probe, files, batch_size=batch_size, device=device, progress=advance
            )
        except (ValueError, RuntimeError) as exc:
            raise fail(exc) from exc
    _show_errors(errors, ErrorLog(out.with_name(out.name + ".errors.jsonl")))
    atomic_write_text(out, json.dumps(predictions, ensure_ascii=False, indent=1))
    counts = Counter(predictions.values())
    if as_json:
        click.echo(
            json.dumps(
                {
                    "predictions": len(predictions),
                    "out": str(out),
                    "labels": dict(counts),
                    "errors": _error_dicts(errors),
                }
            )
        )
        return
    table = Table(title="Predictions")
    table.add_column("label")
    table.add_column("files", justify="right")
    for lab in probe.labels:
        table.add_row(escape(lab), str(counts.get(lab, 0)))
    _stdout().print(table)
