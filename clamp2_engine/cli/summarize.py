"""``clamp2-engine summarize``: multilingual summaries of piece metadata from an OpenAI-compatible LLM."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from clamp2_engine.cli.options import allow_failures_option, exit_for_failures, fail, interrupted

LLM_OPTIONS: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--base-url",
        envvar="OPENAI_BASE_URL",
        show_envvar=True,
        required=True,
        help="OpenAI-compatible API root, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1.",
    ),
    click.option("--llm", "llm", required=True, help="Chat model name as the server knows it."),
    click.option(
        "--llm-api-key-env",
        "api_key_env",
        default="OPENAI_API_KEY",
        show_default=True,
        help="Environment variable holding the API key (never printed; optional for local servers).",
    ),
    click.option(
        "--concurrency",
        default=8,
        show_default=True,
        type=click.IntRange(1, 1024),
        help="Requests in flight at most.",
    ),
    click.option(
        "--seed",
        default=0,
        show_default=True,
        type=int,
        help="Seed of the per-item choice of the non-English language.",
    ),
    click.option(
        "--languages",
        default=None,
        help="Comma-separated languages to choose from (default: the reference's 100).",
    ),
    click.option(
        "--max-retries",
        default=5,
        show_default=True,
        type=click.IntRange(0, 100),
        help="Retries per item on 429, 408/409, 5xx, timeouts and connection errors.",
    ),
    click.option(
        "--answer-retries",
        default=1,
        show_default=True,
        type=click.IntRange(0, 20),
        help="Times an invalid answer (not JSON, wrong shape or language) is asked again.",
    ),
    click.option(
        "--llm-timeout",
        "timeout",
        default=60.0,
        show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        help="Seconds to wait for one answer.",
    ),
]


def llm_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The LLM options of ``summarize``, for reuse by ``ingest --summarize``."""
    for option in reversed(LLM_OPTIONS):
        f = option(f)
    return f


@click.command()
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@llm_options
@click.option(
    "--retry-none",
    is_flag=True,
    help="Ask again for items an earlier run recorded as having too little information.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run's counts as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@allow_failures_option
def summarize(
    src: Path,
    out: Path,
    base_url: str,
    llm: str,
    api_key_env: str,
    concurrency: int,
    seed: int,
    languages: str | None,
    max_retries: int,
    answer_retries: int,
    timeout: float,
    retry_none: bool,
    as_json: bool,
    quiet: bool,
    allow_failures: bool,
) -> None:
    """Write English and non-English summaries of SRC's metadata to OUT (JSONL).

    SRC is a folder of per-piece .json files (walked recursively) or a .jsonl; OUT gets one line per
    piece (the input fields, summary_en, summary_nen, filepaths last), ready for `ingest --metadata` and
    `train clamp2`. Re-running skips the items already in OUT; failures go to OUT's .errors.jsonl.
    Exit status: 0 all items done, 1 some items failed (0 with --allow-failures), 2 usage errors.
    """
    from clamp2_engine.ingest.llm_prompt import resolve_languages
    from clamp2_engine.ingest.summarize import SummarizeError, load_items, summarize_items
    from clamp2_engine.runlog import RunSummary, console

    try:
        langs = list(resolve_languages(languages))
    except ValueError as exc:
        raise fail(exc) from None
    if src.is_file() and src.suffix.lower() not in (".jsonl", ".json"):
        raise click.ClickException(f"{src}: expected a folder of .json files or a .jsonl file")
    items = load_items(src)
    if not items:
        raise click.ClickException(f"no metadata found in {src}")
    try:
        report = summarize_items(
            items,
            out,
            base_url=base_url,
            model=llm,
            api_key_env=api_key_env,
            concurrency=concurrency,
            seed=seed,
            languages=langs,
            max_retries=max_retries,
            timeout=timeout,
            progress=not quiet and not as_json,
            answer_retries=answer_retries,
            retry_none=retry_none,
        )
    except SummarizeError as exc:
        raise click.ClickException(f"{exc} (finished items are kept in {out}; re-run to resume)") from None
    except KeyboardInterrupt:
        interrupted(f"finished items are kept in {out}; re-run to resume")
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
        exit_for_failures(report.failed, allow_failures)
        return
    summary = RunSummary("summarize", seconds=report.seconds)
    for key in ("done", "skipped", "none", "failed", "retries", "tokens"):
        summary.add(key, getattr(report, key))
    summary.print()
    if report.failed or report.none:
        console.print(
            f"[yellow]{report.failed} failed, {report.none} with too little information; "
            f"reasons in {report.errors_path}[/yellow]"
        )
        for kind, n in report.reasons.most_common(6):
            console.print(f"  {n} x {kind}")
    console.print(f"wrote {out}")
    exit_for_failures(report.failed, allow_failures)
