"""``classify train`` / ``classify predict``: linear probes on embedded features.

Light at import time: numpy, torch and matplotlib are imported inside the commands.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from clamp2_engine.cli import plots
from clamp2_engine.cli.options import fail
from clamp2_engine.cli.report import DIR, OUT_FILE, error_dicts, metrics_table, show_errors, stdout_console
from clamp2_engine.runlog import ErrorLog, progress_bar


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
        show_errors(errors, log)
        raise click.ClickException("no usable training features")
    eval_files = None
    if eval_dirs:
        eval_files, eval_errors = P.scan_features(eval_dirs, hidden=train_files[0].hidden)
        eval_files, unknown = P.known_labels(eval_files, train_files)
        errors += eval_errors + unknown
    show_errors(errors, log)
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
            json.dumps({"probe": str(out), **m, "skipped": len(errors), "errors": error_dicts(errors)})
        )
        return
    con = stdout_console()
    summary = {
        "accuracy": m["accuracy"],
        "macro F1": m["macro_f1"],
        "best epoch": m["best_epoch"],
        "epochs run": m["epochs_run"],
        "train files": m["train_files"],
        "eval files": m["eval_files"],
        "labels": len(m["labels"]),
    }
    con.print(metrics_table("Linear probe", summary, 4))
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
    show_errors(errors, ErrorLog(out.with_name(out.name + ".errors.jsonl")))
    atomic_write_text(out, json.dumps(predictions, ensure_ascii=False, indent=1))
    counts = Counter(predictions.values())
    if as_json:
        click.echo(
            json.dumps(
                {
                    "predictions": len(predictions),
                    "out": str(out),
                    "labels": dict(counts),
                    "errors": error_dicts(errors),
                }
            )
        )
        return
    table = Table(title="Predictions")
    table.add_column("label")
    table.add_column("files", justify="right")
    for lab in probe.labels:
        table.add_row(escape(lab), str(counts.get(lab, 0)))
    stdout_console().print(table)
