"""``clamp2-engine train m3|clamp2``: pre-train M3 or train / fine-tune CLaMP 2, one process or DDP.

The same commands run under ``torchrun --nproc_per_node N -m clamp2_engine train ...`` (the package's own
entry point, which no local ``train.py`` can shadow); ``train`` (the package) is imported only when a
command runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from clamp2_engine.cli.options import fail
from clamp2_engine.music.text import MAX_TEXT_LENGTH
from clamp2_engine.types import DTYPES


def loop_options(batch_size: int, lr: float) -> Callable:
    """Options every training command shares (the run folder, length, optimisation, evaluation, hardware)."""

    def decorate(f: Callable) -> Callable:
        for opt in reversed([*_run_options(), *_optimizer_options(batch_size, lr), *_eval_options()]):
            f = opt(f)
        return f

    return decorate


def _run_options() -> list[Callable]:
    """The run folder and how long it trains."""
    return [
        click.option(
            "--out",
            "out",
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            metavar="RUN_DIR",
            help="Run folder: best.pth, latest.pth, metrics.jsonl, config.json.",
        ),
        click.option(
            "--resume",
            is_flag=True,
            help="Continue RUN_DIR from latest.pth (optimizer, scheduler, step and position in the epoch).",
        ),
        click.option("--epochs", type=click.IntRange(1), default=100, show_default=True),
        click.option(
            "--max-steps",
            type=click.IntRange(1),
            default=None,
            help="Stop after this many optimizer steps in total (a resumed run counts earlier ones).",
        ),
    ]


def _optimizer_options(batch_size: int, lr: float) -> list[Callable]:
    """Batches, learning rate and its schedule, clipping."""
    return [
        click.option(
            "--batch-size",
            type=click.IntRange(1),
            default=batch_size,
            show_default=True,
            help="Per process; the global batch is this x processes x --grad-accum.",
        ),
        click.option(
            "--grad-accum",
            type=click.IntRange(1),
            default=1,
            show_default=True,
            help="Micro-batches per optimizer step.",
        ),
        click.option("--lr", type=click.FloatRange(0, min_open=True), default=lr, show_default=True),
        click.option("--weight-decay", type=click.FloatRange(0), default=0.01, show_default=True),
        click.option(
            "--warmup-steps",
            type=click.IntRange(0),
            default=1000,
            show_default=True,
            help="Linear warm-up, then a constant learning rate.",
        ),
        click.option(
            "--max-grad-norm",
            type=click.FloatRange(0, min_open=True),
            default=None,
            help="Clip gradients to this norm (default: no clipping, as the reference).",
        ),
    ]


def _eval_options() -> list[Callable]:
    """Evaluation, checkpoints, logging, precision and hardware, output."""
    return [
        click.option(
            "--eval-every",
            type=click.IntRange(1),
            default=None,
            help="Evaluate and checkpoint every N steps (default: at the end of every epoch).",
        ),
        click.option(
            "--save-every",
            type=click.IntRange(1),
            default=None,
            help="Also write latest.pth every N steps.",
        ),
        click.option(
            "--log-every",
            type=click.IntRange(1),
            default=10,
            show_default=True,
            help="Steps per metrics.jsonl line.",
        ),
        click.option(
            "--eval-split",
            type=click.FloatRange(0, 1, max_open=True),
            default=0.01,
            show_default=True,
            help="Fraction held out for evaluation when no eval set is given.",
        ),
        click.option(
            "--dtype",
            "precision",
            type=click.Choice(DTYPES),
            default="auto",
            show_default=True,
            help="auto: bf16 (or fp16 with loss scaling) autocast on CUDA; on a CPU bf16 where it is native, else fp32.",
        ),
        click.option("--device", default=None, metavar="cpu|cuda", help="Default: cuda when available."),
        click.option(
            "--workers",
            type=click.IntRange(0),
            default=0,
            show_default=True,
            help="Data-loading worker processes per training process.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--dropout",
            type=click.FloatRange(0, 1, max_open=True),
            default=None,
            help="Set every dropout probability (default: the models' 0.1).",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress display or summary table."),
        click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON."),
    ]


LOOP_KEYS = (
    "out",
    "resume",
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "lr",
    "weight_decay",
    "warmup_steps",
    "max_grad_norm",
    "eval_every",
    "save_every",
    "log_every",
    "eval_split",
    "precision",
    "device",
    "workers",
    "seed",
    "dropout",
)


def _run(kind: str, kwargs: dict[str, Any], make_options: Callable[[dict[str, Any]], Any]) -> None:
    from clamp2_engine.checkpoints import CheckpointError, ModelNotFoundError
    from clamp2_engine.train.config import LoopConfig
    from clamp2_engine.train.loop import TrainingError
    from clamp2_engine.train.run import run_clamp2, run_m3

    quiet, as_json = kwargs.pop("quiet"), kwargs.pop("as_json")
    try:
        loop = LoopConfig(**{k: kwargs.pop(k) for k in LOOP_KEYS}, progress=not quiet and not as_json)
        options = make_options(kwargs)
        summary = (run_m3 if kind == "m3" else run_clamp2)(loop, options)
    except (TrainingError, CheckpointError, ModelNotFoundError, ValueError, OSError) as exc:
        raise fail(exc) from None
    if os.environ.get("RANK", "0") != "0":
        return
    if as_json:
        click.echo(json.dumps(summary))
    elif not quiet:
        from rich.table import Table

        from clamp2_engine.runlog import console

        table = Table(title=f"train {kind}", show_header=False)
        for key, value in summary.items():
            if key != "warning":
                table.add_row(key, "-" if value is None else str(value))
        console.print(table)
    if summary.get("warning") and not as_json:
        click.echo(f"warning: {summary['warning']}", err=True)


@click.group()
def train() -> None:
    """Pre-train M3 or train / fine-tune CLaMP 2 (one process, or many with torchrun -m clamp2_engine train)."""


@train.command("m3")
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@loop_options(batch_size=16, lr=1e-4)
@click.option(
    "--eval-dir",
    "eval_data",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Evaluation .abc/.mtf tree (repeatable); default: --eval-split of DATA.",
)
@click.option(
    "--init",
    default=None,
    metavar="CKPT|NAME",
    help="Start from M3 weights (a path, or 'm3' for the released ones).",
)
@click.option(
    "--hidden", "hidden_size", type=click.IntRange(1), default=None, help="Hidden size (fresh: 768)."
)
@click.option(
    "--layers", "num_layers", type=click.IntRange(1), default=None, help="Encoder layers (fresh: 12)."
)
@click.option("--decoder-layers", type=click.IntRange(1), default=None, help="Decoder layers (fresh: 3).")
@click.option("--patch-size", type=click.IntRange(3), default=None, help="Characters per patch (fresh: 64).")
@click.option("--patch-length", type=click.IntRange(2), default=None, help="Patches per window (fresh: 512).")
@click.option("--mask-ratio", type=click.FloatRange(0, 1, min_open=True), default=0.45, show_default=True)
def m3(**kwargs: Any) -> None:
    """Pre-train M3 on DATA (.abc / .mtf files or folders) with the masked-patch objective."""
    from clamp2_engine.train.config import M3Options

    _run(
        "m3",
        kwargs,
        lambda kw: M3Options(data=list(kw.pop("data")), eval_data=list(kw.pop("eval_data")), **kw),
    )


@train.command("clamp2")
@click.argument("items", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@loop_options(batch_size=128, lr=5e-5)
@click.option(
    "--eval-items",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Evaluation JSONL (paths relative to its folder); default: --eval-split of ITEMS.",
)
@click.option(
    "--init",
    default=None,
    metavar="CKPT|NAME",
    help="Start from a full CLaMP 2 checkpoint ('clamp2': the released one).",
)
@click.option(
    "--m3", default=None, metavar="CKPT|NAME", help="Load M3 weights into the music tower ('m3': released)."
)
@click.option(
    "--text-model",
    envvar="CLAMP2_TEXT_MODEL",
    default=None,
    metavar="DIR|NAME",
    help="XLM-R config + tokenizer (+ weights, loaded when present); default FacebookAI/xlm-roberta-base.",
)
@click.option(
    "--hidden", "hidden_size", type=click.IntRange(1), default=None, help="Music hidden size (fresh: 768)."
)
@click.option(
    "--layers", "num_layers", type=click.IntRange(1), default=None, help="Music layers (fresh: 12)."
)
@click.option("--patch-size", type=click.IntRange(3), default=None, help="Characters per patch (fresh: 64).")
@click.option("--patch-length", type=click.IntRange(2), default=None, help="Patches per window (fresh: 512).")
@click.option(
    "--text-hidden",
    "text_hidden_size",
    type=click.IntRange(1),
    default=None,
    help="Text hidden size; any text size option makes a random text tower.",
)
@click.option("--text-layers", type=click.IntRange(1), default=None)
@click.option("--text-intermediate", type=click.IntRange(1), default=None, help="Default: 4 x text hidden.")
@click.option("--embed-dim", type=click.IntRange(1), default=None, help="Joint space size (fresh: 768).")
@click.option(
    "--max-text-length",
    type=click.IntRange(2),
    default=None,
    help=f"Text window in tokens; default: the --init checkpoint's (the demo's 64), else {MAX_TEXT_LENGTH}.",
)
@click.option(
    "--text-dropout/--no-text-dropout",
    default=True,
    show_default=True,
    help="Random metadata subsets and summaries in other languages as training text.",
)
@click.option("--logit-scale", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True)
def clamp2(**kwargs: Any) -> None:
    """Train CLaMP 2 on ITEMS (seed JSONL: metadata, summary_en, summary_nen, filepaths)."""
    from clamp2_engine.train.config import CLaMP2Options

    if kwargs.get("init") and kwargs.get("m3"):
        raise click.UsageError("--init (a whole CLaMP 2) and --m3 (its music tower) exclude each other")
    _run("clamp2", kwargs, lambda kw: CLaMP2Options(**kw))
