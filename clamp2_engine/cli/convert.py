"""``clamp2-engine convert``: turn a folder of scores / MIDI / MTF / ABC into CLaMP 2 input formats."""

from __future__ import annotations

import json
from pathlib import Path

import click

from clamp2_engine.cli.options import EXIT_CODES, allow_failures_option, exit_for_failures


@click.command(epilog=EXIT_CODES)
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Choice(["abc", "mtf", "midi", "xml"]),
    help="abc: scores (MusicXML, ABC, Humdrum, ...) -> interleaved ABC; mtf: MIDI (and scores, "
    "rendered) -> MTF; midi: MTF -> MIDI; xml: ABC -> MusicXML.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=0),
    default=None,
    help="Worker processes [default: CPU count]. 0 converts in this process without a time limit.",
)
@click.option("--overwrite", is_flag=True, help="Convert again and replace outputs that exist.")
@click.option("--full", is_flag=True, help="MTF: keep every MIDI message (default: M3-compatible).")
@click.option(
    "--convert-timeout",
    "timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=180.0,
    show_default=True,
    help="Seconds one item may take before its worker is killed and the item reported.",
)
@click.option(
    "--max-size",
    type=click.FloatRange(min=0, min_open=True),
    default=64.0,
    show_default=True,
    help="Refuse input files larger than this many MiB.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@allow_failures_option
def convert(
    src: Path,
    dst: Path,
    to: str,
    jobs: int | None,
    overwrite: bool,
    full: bool,
    timeout: float,
    max_size: float,
    as_json: bool,
    quiet: bool,
    allow_failures: bool,
) -> None:
    """Convert SRC (a file or a folder tree) into DST, mirroring SRC's folders.

    Tune books become one file per tune (NAME_<X>.abc). A second run skips outputs that exist. Every
    failure is a line in DST/errors.jsonl (source, stage, reason); the batch always finishes.
    """
    from clamp2_engine.errors import require_extra

    require_extra("convert")
    from clamp2_engine.music.convert import convert_tree
    from clamp2_engine.music.convert.batch import EXTENSION, SUFFIXES

    src_r, dst_r = src.resolve(), dst.resolve()
    if src_r.is_dir() and (dst_r == src_r or src_r in dst_r.parents) and EXTENSION[to] in SUFFIXES[to]:
        raise click.ClickException(f"DST {dst} lies inside SRC {src}: outputs would be read as inputs")
    if dst_r.exists() and not dst_r.is_dir():
        raise click.ClickException(f"DST {dst} is not a folder")
    report = convert_tree(
        src,
        dst,
        to,
        jobs=jobs,
        overwrite=overwrite,
        m3_compatible=not full,
        timeout=timeout,
        max_bytes=int(max_size * 1024 * 1024),
        progress=not quiet and not as_json,
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        report.summary.print(report.errors)
    _say_other_targets(src, to)
    exit_for_failures(report.summary.counts.get("failed", 0), allow_failures)


# what files of another kind become, when --to cannot take them
OTHER_TARGETS = {"midi": ("mtf", "MIDI"), "mtf": ("midi", "MTF"), "score": ("abc or --to mtf", "score")}


def _say_other_targets(src: Path, to: str) -> None:
    """A note for the files of SRC that ``--to`` does not convert, naming the target that does."""
    from clamp2_engine.music.convert.batch import SUFFIXES
    from clamp2_engine.paths import iter_files
    from clamp2_engine.types import MIDI_SUFFIXES, MTF_SUFFIXES, SCORE_SUFFIXES

    kinds = {"midi": MIDI_SUFFIXES, "mtf": MTF_SUFFIXES, "score": SCORE_SUFFIXES}
    for kind, suffixes in kinds.items():
        if suffixes <= SUFFIXES[to] or OTHER_TARGETS[kind][0].startswith(to):
            continue
        n = sum(1 for _ in iter_files(src, suffixes - SUFFIXES[to]))
        if n:
            target, name = OTHER_TARGETS[kind]
            click.echo(
                f"note: {n} {name} file(s) left as they are: --to {to} does not take them (use --to {target})",
                err=True,
            )
