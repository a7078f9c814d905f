"""``clamp2-engine export onnx``: the music and text towers as ONNX graphs for ONNX Runtime."""

from __future__ import annotations

import json

import click

from clamp2_engine.cli.options import fail, max_text_length_option

MIN_COSINE = {"fp32": 0.9999, "fp16": 0.99, "int8": 0.95}  # below this the export is reported as failed


@click.group()
def export() -> None:
    """Export models for other runtimes."""


@export.command("onnx")
@click.option(
    "--model",
    envvar="CLAMP2_MODEL",
    default=None,
    metavar="PATH|NAME",
    help="Checkpoint file (reference format) or a known name; default: clamp2. Env: CLAMP2_MODEL.",
)
@click.option(
    "--text-model",
    envvar="CLAMP2_TEXT_MODEL",
    default=None,
    metavar="DIR|NAME",
    help="Folder (or Hub name) with the XLM-R config and tokenizer; default: FacebookAI/xlm-roberta-base. "
    "Env: CLAMP2_TEXT_MODEL.",
)
@click.option(
    "--out",
    "out",
    default=None,
    type=click.Path(file_okay=False),
    help="Folder to write; default: the model cache in the data folder, which search and serve then use "
    "by themselves for this model's collections (fast start, no torch import).",
)
@click.option(
    "--dtype",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="Weights: fp32; fp16 (inputs stay int64, outputs float32; for GPUs); int8 by ONNX Runtime dynamic "
    "quantization (for CPUs; opt-in: see the README's measured cosine and top-10 agreement).",
)
@click.option("--opset", type=click.IntRange(14, 23), default=17, show_default=True, help="ONNX opset.")
@click.option(
    "--no-fuse", is_flag=True, help="Keep standard ONNX ops only (no ONNX Runtime fused attention)."
)
@click.option("--no-verify", is_flag=True, help="Skip the comparison against PyTorch.")
@click.option("--overwrite", is_flag=True, help="Replace graphs already in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@max_text_length_option
def onnx(
    model: str | None,
    text_model: str | None,
    out: str | None,
    dtype: str,
    opset: int,
    no_fuse: bool,
    no_verify: bool,
    overwrite: bool,
    as_json: bool,
    max_text_length: int | None,
) -> None:
    """Write music.onnx and text.onnx (CLaMP 2) or music.onnx (M3), plus the tokenizer, into --out.

    Serve them with `--backend onnx --onnx-dir OUT` on embed, ingest and search. Without --out the graphs
    go to the model cache, and `search` / `serve` use them for every collection this model made.
    """
    from rich.console import Console

    from clamp2_engine.checkpoints import CheckpointError, ModelNotFoundError
    from clamp2_engine.exporters.onnx import export_onnx

    console = Console(stderr=True)
    log = (lambda _m: None) if as_json else (lambda m: console.print(f"[dim]{m}...[/dim]"))
    try:
        result = export_onnx(
            model,
            out,
            text_model,
            fp16=dtype == "fp16",
            int8=dtype == "int8",
            opset=opset,
            fuse=not no_fuse,
            verify=not no_verify,
            overwrite=overwrite,
            max_text_length=max_text_length,
            log=log,
        )
    except (ModelNotFoundError, CheckpointError, FileExistsError, ValueError, OSError) as exc:
        raise fail(exc) from None
    worst = min(result.verification.values()) if result.verification else None
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "worst_cosine": worst}))
    else:
        _print(console, result, worst)
    if worst is not None and worst < MIN_COSINE[result.precision]:
        raise click.ClickException(
            f"verification failed: worst cosine {worst:.6f} against PyTorch is below "
            f"{MIN_COSINE[result.precision]} for {result.precision}"
        )


def _print(console, result, worst: float | None) -> None:
    from rich.table import Table

    console.print(
        f"exported {result.identity['name']} ({result.identity['kind']}) to {result.out} in "
        f"{result.seconds:.0f} s"
    )
    table = Table(title=f"ONNX graphs ({result.precision}, opset {result.opset})")
    table.add_column("file")
    table.add_column("size", justify="right")
    for path in result.files.values():
        size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
        table.add_row(path.name + ("/" if path.is_dir() else ""), f"{size / 2**20:.1f} MiB")
    console.print(table)
    if result.verification:
        checks = Table(title="against PyTorch fp32")
        checks.add_column("output")
        checks.add_column("worst cosine", justify="right")
        for key, value in result.verification.items():
            checks.add_row(key, f"{value:.7f}")
        console.print(checks)
        click.echo(f"worst cosine: {worst:.7f}")
