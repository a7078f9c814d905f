"""``collections`` (list, info, optimize, reindex, verify, repair, drop) and ``migrate``: the collections of
a store."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from clamp2_engine.cli.options import (
    collection_name,
    fail,
    quantization_option,
    store_client,
    store_options,
    table_console,
)

# --- collections --------------------------------------------------------------------------------------


@click.group()
def collections() -> None:
    """List, inspect, optimize, reindex, verify, repair and drop collections."""


@collections.command("list")
@click.option("--json", "as_json", is_flag=True)
@store_options
def collections_list(as_json: bool, **kwargs: Any) -> None:
    """Collections in the store, with their sizes and models."""
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
        points = "in use" if r["status"] == "in use" else str(r["points"] if r["points"] is not None else "-")
        points = "damaged" if r["status"] == "damaged" else points
        table.add_row(r["name"], points, str(r["model"] or "-"), str(r["dim"] or "-"), r["created"] or "")
    console = table_console()
    console.print(table)
    for r in rows:
        if r["problem"]:
            console.print(f"[yellow]{r['name']}: {r['problem']}[/yellow]", highlight=False, markup=True)


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
    from rich.table import Table

    from clamp2_engine.search.models import plan_query_model

    with store_client(kwargs) as store:
        coll = _or_fail(lambda: store.collection(name))
        info = _or_fail(coll.info)
        info["query_model"] = plan_query_model(coll.record, "text")
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
        ("quantization", _quantization_line(info.get("quantization", "none"), info.get("groups"))),
        ("disk", f"{info['disk_bytes'] / 2**20:.1f} MiB" if "disk_bytes" in info else "-"),
        ("model", f"{model.get('name')} ({model.get('kind')}, sha256 {model.get('checkpoint_sha256')})"),
        ("model source", json.dumps(info["model_source"])),
        ("text queries", _query_model_line(info["query_model"], model, info["model_source"])),
        ("created", info["created"]),
        ("payload indexes", ", ".join(info["payload_indexes"]) or "none"),
        (
            "search by name",
            "yes (lexical BM25 index)"
            if info.get("lexical")
            else f"no: `clamp2-engine collections reindex {name}` adds it",
        ),
    ]
    for k, v in rows:
        table.add_row(k, v)
    table_console().print(table)


def _quantization_line(kind: str, groups: list[str] | None) -> str:
    """How the vectors are kept, and (embedded) the vector groups' shards."""
    line = (
        "none: float32 vectors in RAM"
        if kind == "none"
        else f"{kind} copy in RAM, float32 originals on disk, searches rescored"
    )
    return line + (f"; vector groups: {', '.join(groups)}" if groups else "")


def _query_model_line(plan: dict[str, str], model: dict[str, Any], source: dict[str, Any]) -> str:
    """How text queries are encoded, and how to make them faster when they could be."""
    line = f"{plan['runtime']} {plan['precision']} ({plan['source']})"
    if plan["runtime"] == "torch" and model.get("kind") == "clamp2":
        which = f" --model {source['model']}" if source.get("model") else ""
        line += f"; `clamp2-engine export onnx{which}` makes them faster, with the same hits"
    return line


@collections.command("optimize")
@click.argument("name", callback=collection_name)
@quantization_option(
    "Keep the vectors this way from now on (none, int8, turbo4, binary), converted without embedding "
    "again: a server converts in place; the embedded store copies the collection and sets the old folder "
    "aside."
)
@store_options
def collections_optimize(name: str, quantization: str | None, **kwargs: Any) -> None:
    """Build collection NAME's search index (HNSW) now; ingest does it at its end. With --quantization,
    convert how it keeps its vectors first."""
    started = time.perf_counter()
    with store_client(kwargs) as store:
        coll = _or_fail(store.collection, name)
        if quantization is not None:
            coll = _convert(store, coll, quantization)
        click.echo(f"building the search index of {name} ...", err=True)
        changed = coll.optimize()
        indexed = coll.info().get("indexed_vectors")
    what = "optimized" if changed else "already optimal"
    click.echo(
        f"{name}: {what} in {time.perf_counter() - started:.1f} s ({indexed} vectors indexed)", err=True
    )


def _convert(store: Any, coll: Any, kind: str) -> Any:
    from clamp2_engine.runlog import progress_bar
    from clamp2_engine.store.quantize import convert

    was = coll.record.quantization
    with progress_bar(f"{coll.name}: {was} -> {kind}", coll.count()) as advance:
        coll, changed = _or_fail(convert, store, coll.name, kind, advance)
    click.echo(f"{coll.name}: vectors kept as {kind}" + ("" if changed else " already"), err=True)
    return coll


@collections.command("reindex")
@click.argument("name", callback=collection_name)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@store_options
def collections_reindex(name: str, as_json: bool, **kwargs: Any) -> None:
    """Bring collection NAME to the current schema without re-embedding: add the lexical (BM25) index
    that hybrid search and word filters use, put metadata under one name per field (genre -> genres),
    and make the facet indexes. Vectors are not touched; running it again is harmless."""
    from clamp2_engine.runlog import progress_bar

    started = time.perf_counter()
    with store_client(kwargs) as store:
        coll = _or_fail(store.collection, name)
        total = coll.count()
        click.echo(f"reindexing {name} ({total} points) ...", err=True)
        with progress_bar("reindex", total, enabled=not as_json and total > 0) as advance:
            done = _or_fail(coll.reindex, 256, advance)
        coll.optimize()
    seconds = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps({"name": name, "points": done, "seconds": round(seconds, 2), "lexical": True}))
    else:
        click.echo(f"{name}: {done} points reindexed in {seconds:.1f} s (lexical index ready)", err=True)


@collections.command("drop")
@click.argument("name", callback=collection_name)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@store_options
def collections_drop(name: str, yes: bool, **kwargs: Any) -> None:
    """Delete collection NAME and all its points."""
    from clamp2_engine.store import CollectionError, StoreError, StoreInUseError

    with store_client(kwargs) as store:
        try:
            what = f"collection {name!r} and its {store.collection(name, check=False).count()} points"
        except StoreInUseError as exc:
            raise fail(exc) from None
        except (CollectionError, StoreError) as exc:  # damaged: it can still be dropped
            if not store.exists(name):
                raise fail(exc) from None
            what = f"damaged collection {name!r} ({exc})"
        if not yes:
            click.confirm(f"drop {what}?", abort=True)
        _or_fail(store.drop, name)
    from clamp2_engine.ingest.run import errors_path

    errors_path(name).unlink(missing_ok=True)  # its problems list goes with it
    click.echo(f"dropped {name}", err=True)


@collections.command("verify")
@click.argument("name", callback=collection_name)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@store_options
def collections_verify(name: str, as_json: bool, **kwargs: Any) -> None:
    """Check collection NAME deeply: its record, its point count, every point readable, every vector
    intact (finite, of unit length), every payload decoded. Exit status 1 when anything is wrong."""
    from clamp2_engine.store.health import verify

    with store_client(kwargs) as store:
        if not store.exists(name):
            _or_fail(store.collection, name)  # the usual "no collection" line
        health = _or_fail(verify, store, name)
    _print_health(health, as_json)
    if not health.ok:
        raise SystemExit(1)


def _print_health(health: Any, as_json: bool) -> None:
    from clamp2_engine.runlog import console

    if as_json:
        click.echo(json.dumps(health.as_dict(), ensure_ascii=False))
        return
    counts = ", ".join(f"{n} {v}" for v, n in health.vectors.items())
    recorded = f" (its record says {health.recorded})" if health.recorded is not None else ""
    console.print(f"{health.name}: {health.points} points{recorded}; vectors: {counts}", highlight=False)
    for problem in health.problems:
        console.print(f"[red]- {problem}[/red]", highlight=False)
    for pid, why in list(sorted(health.damaged.items()))[:20]:
        console.print(f"  {pid}: {why}", highlight=False, markup=False)
    if len(health.damaged) > 20:
        console.print(f"  ... and {len(health.damaged) - 20} more (--json lists them all)", highlight=False)
    console.print("ok" if health.ok else f"damaged: `clamp2-engine collections repair {health.name}`")


@collections.command("repair")
@click.argument("name", callback=collection_name)
@click.option(
    "--model",
    default=None,
    metavar="PATH|NAME",
    help="The model that made the vectors, to write a lost record again when it has no copy.",
)
@click.option("--no-ingest", is_flag=True, help="Mend the storage only; do not ingest what is missing.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@store_options
def collections_repair(name: str, model: str | None, no_ingest: bool, as_json: bool, **kwargs: Any) -> None:
    """Mend collection NAME: write its record again (from its copy, or for --model), delete damaged
    points, then ingest again, from the folders the collection was ingested from, whatever is missing
    (only that is embedded). Exit status 1 when it is still damaged afterwards."""
    from clamp2_engine.store.health import repair, verify

    with store_client(kwargs) as store:
        if not store.exists(name):
            _or_fail(store.collection, name)
        health = _or_fail(verify, store, name)
        identity = _identity(model) if model else None
        mended = _or_fail(repair, store, name, health, identity) if not health.ok else None
        ingested = [] if no_ingest else _ingest_again(store, name, as_json)
        after = _or_fail(verify, store, name)
    outcome = {
        "name": name,
        "found": health.problems,
        "mended": mended.as_dict() if mended else None,
        "ingested": ingested,
        "ok": after.ok,
        "points": after.points,
        "problems": after.problems,
    }
    if as_json:
        click.echo(json.dumps(outcome, ensure_ascii=False))
    else:
        _say_repair(outcome)
    if not after.ok:
        raise SystemExit(1)


def _identity(model: str) -> Any:
    from clamp2_engine.pretrained import LoadOptions, load

    try:
        return load(LoadOptions(model=model, towers=("music",))).identity
    except (OSError, ValueError, RuntimeError) as exc:
        raise fail(exc) from None


def _ingest_again(store: Any, name: str, as_json: bool) -> list[dict[str, Any]]:
    """Ingest every corpus of collection NAME's record again from its folder: only what is missing or
    changed is embedded (with ``as_json``, each ingest's report is a JSON line before the outcome's)."""
    from clamp2_engine.cli.ingest import run_ingest
    from clamp2_engine.ingest.run import IngestOptions

    coll = _or_fail(store.collection, name, False)
    done = []
    for corpus, folder in sorted(coll.record.corpora.items()):
        if not Path(folder).is_dir():
            done.append({"corpus": corpus, "folder": folder, "error": "the folder is no longer there"})
            continue
        options = IngestOptions(corpus_name=corpus, progress=not as_json)
        report = run_ingest(store, Path(folder), name, options, "local", as_json).report  # a JSON line
        done.append({"corpus": corpus, "folder": folder, "embedded": report.counts["embedded"]})
    return done


def _say_repair(outcome: dict[str, Any]) -> None:
    from clamp2_engine.runlog import console

    mended = outcome["mended"] or {}
    if mended.get("record"):
        console.print(f"record written again {mended['record']}", highlight=False)
    if mended.get("deleted_points"):
        console.print(
            f"{mended['deleted_points']} damaged point(s) removed (the old storage is kept in the store folder's .set-aside/)",
            highlight=False,
        )
    for row in outcome["ingested"]:
        what = row.get("error") or f"{row['embedded']} item(s) embedded again"
        console.print(f"corpus {row['corpus']} ({row['folder']}): {what}", highlight=False, markup=False)
    state = "ok" if outcome["ok"] else "still damaged: " + "; ".join(outcome["problems"])
    console.print(f"{outcome['name']}: {outcome['points']} points, {state}", highlight=False, markup=False)


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
