"""Patching: the reference's way (strings split per line and message, one Python list of ids per patch,
then one array) against the engine's (the same patches, their ids written from one byte buffer).

    python benchmarks/bench_patches.py [--rounds 5] [--no-write]

Reads every ABC and MTF file of tests/fixtures (the bench corpus and the parity inputs), checks that both
give identical ids for every file, and times both over all of them in one run (best of ``--rounds``).
The baseline is written here from the reference's published algorithm (``M3Patchilizer.encode`` with
``add_special_patches=True``, then ``torch.tensor`` of its lists, here ``np.asarray``), step by step as it
does it. The engine's ids are uint8 (what its runtimes move; they widen them on the device). Writes the ``patches`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from unidecode import unidecode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, table, write_section  # noqa: E402
from clamp2_engine.music.patches import encode_patches  # noqa: E402
from clamp2_engine.music.text import read_text_file  # noqa: E402

BARLINES = ["|:", "::", ":|", "[|", "||", "|]", "|"]
BAR_RE = "(" + "|".join(map(re.escape, BARLINES)) + ")"


def reference_patches(item: str, patch_size: int = 64) -> list[str]:
    """The reference's ``M3Patchilizer.split_patches`` / ``split_bars``, statement by statement (its string
    handling); where it raises (a last line that is one barline, no newline) the engine drops the line."""
    item = unidecode(item)
    lines = [x for x in re.findall(r".*?\n|.*$", item) if x]
    found: list[str] = []
    if lines[0].split(" ")[0] == "ticks_per_beat":
        current = ""
        for line in lines:
            rest = " ".join(line.split(" ")[1:])
            if current.startswith(line.split(" ")[0]) and len(current) + len(rest) <= patch_size - 2:
                current = current[:-1] + "\t" + rest
            else:
                if current:
                    found.append(current)
                current = line
        if current != "":
            found.append(current)
        return found
    for line in lines:
        if len(line) > 1 and ((line[0].isalpha() and line[1] == ":") or line.startswith("%%")):
            found.append(line)
            continue
        parts = [x for x in re.split(BAR_RE, "".join(line)) if x]
        if parts == parts[:1] and parts[0] in BARLINES:
            continue  # the reference raises IndexError here
        if parts and parts[0] in BARLINES:
            parts[1] = parts[0] + parts[1]
            parts = parts[1:]
        bars = [parts[i * 2] + parts[i * 2 + 1] for i in range(len(parts) // 2)]
        if bars:
            bars[-1] += "\n"
            found.extend(bars)
    return found


def reference_ids(item: str, patch_size: int = 64) -> np.ndarray:
    """The reference's patching and ids: its patches, a Python list of ids per patch, then one array."""
    found = [chr(1) * patch_size, *reference_patches(item, patch_size), chr(2) * patch_size]
    rows = []
    for patch in found:
        ids = ([1] + [ord(c) for c in patch] + [2])[:patch_size]
        rows.append(ids + [0] * (patch_size - len(ids)))
    return np.asarray(rows, dtype=np.int64)


def best_of(fn, texts: list[str], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for text in texts:
            fn(text)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    fixtures = ROOT / "tests" / "fixtures"
    rows = []
    for kind in ("abc", "mtf"):
        files = sorted(p for p in fixtures.rglob(f"*.{kind}"))
        texts = [read_text_file(p) for p in files]
        differ = [
            p.name
            for p, t in zip(files, texts, strict=True)
            if not np.array_equal(reference_ids(t), encode_patches(t))
        ]
        if differ:
            raise SystemExit(f"ids differ for {differ[:5]}")
        patches = sum(len(encode_patches(t)) for t in texts)
        ref, ours = best_of(reference_ids, texts, args.rounds), best_of(encode_patches, texts, args.rounds)
        rows.append(
            [
                kind.upper(),
                len(files),
                f"{patches:,}",
                f"{ref * 1e3:.1f}",
                f"{ours * 1e3:.1f}",
                f"{ref / ours:.2f}x",
                "yes",
            ]
        )
        print(
            f"{kind}: {len(files)} files, {patches} patches: reference {ref * 1e3:.1f} ms, engine {ours * 1e3:.1f} ms, {ref / ours:.2f}x"
        )
    load = os.getloadavg()[0]
    md = (
        "## Patching: the engine against the reference's patchilizer (`benchmarks/bench_patches.py`)\n\n"
        f"Measured on {machine()}; load average {load:.2f} when it ran.\n\n"
        + table(
            ["files", "count", "patches", "reference (ms)", "engine (ms)", "speed-up", "identical ids"], rows
        )
        + "\n\nBoth sides patch the same texts in one process, best of "
        f"{args.rounds} rounds (`python benchmarks/bench_patches.py`). The reference splits line by line, "
        "builds a Python list of ids per patch and an int64 array of them. The engine cuts an ABC body whose "
        "lines are bars closed by barlines (what interleaved ABC is) with one split of the whole text (line "
        "by line, as the reference, for any other line), and writes every patch's row into one uint8 buffer: "
        "padded strings for ABC's short bars, one vectorised scatter for MTF's long runs. Its patches and ids "
        "are the reference's (`tests/test_patches.py` checks every fixture and 20,000 random texts against "
        "the reference's algorithm).\n"
    )
    if not args.no_write:
        write_section("patches", md)
    print(md)


if __name__ == "__main__":
    main()
