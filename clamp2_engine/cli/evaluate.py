"""``eval`` and ``score``: retrieval metrics and the CLaMP 2 score.

Light at import time: numpy, torch and matplotlib are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from clamp2_engine.cli import plots
from clamp2_engine.cli.options import STORE_OPTION_NAMES, fail, resolve_spec, store_options
from clamp2_engine.cli.report import DIR, OUT_FILE, error_dicts, metrics_table, show_errors, stdout_console
from clamp2_engine.runlog import progress_bar


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
    show_errors(errors)
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
        click.echo(json.dumps({**metrics, **extra, "errors": error_dicts(errors)}))
        return
    out = stdout_console()
    out.print(metrics_table(f"Retrieval ({ties} ties)", metrics, decimals))
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
    show_errors(bad_lines)
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
    show_errors(result.skipped)
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
                    "errors": error_dicts([*bad_lines, *result.skipped]),
                }
            )
        )
        return
    stdout_console().print(
        metrics_table(f"Text-to-music retrieval ({field} -> {modality})", metrics, decimals)
    )


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
    show_errors(errors)
    result = round_metrics(result, decimals)
    if as_json:
        click.echo(json.dumps({**result, "errors": error_dicts(errors)}))
        return
    stdout_console().print(metrics_table("CLaMP 2 score", result, decimals))


# --- classify ---------------------------------------------------------------------------------------
