"""What a new user does, timed: `git clone` into an empty temporary folder (nothing beside it), then the
README's first command (install + `clamp2-engine demo`, offline), twice, a base install without extras
searching the demo collection, and what CI runs (`.ci/run`: install, lint, the README's test command).

    python benchmarks/fresh_clone.py [--no-tests] [--keep]

The commands are read from the README between its ``quickstart`` and ``tests`` markers and run with
``bash -c`` exactly as printed, with ``HF_HUB_OFFLINE=1`` and a fresh ``CLAMP2_HOME``. The clone is of the
committed HEAD. Times go to the ``fresh-clone`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, table, write_section  # noqa: E402


def readme_command(marker: str, readme: Path = ROOT / "README.md") -> str:
    """The one ```bash block between ``<!-- MARKER:start -->`` and ``<!-- MARKER:end -->``."""
    text = readme.read_text(encoding="utf-8")
    block = re.search(rf"<!-- {marker}:start -->(.*?)<!-- {marker}:end -->", text, re.S)
    if not block:
        raise SystemExit(f"README has no {marker} markers")
    code = re.search(r"```bash\n(.*?)```", block.group(1), re.S)
    if not code:
        raise SystemExit(f"README's {marker} section has no bash block")
    return code.group(1).replace("\\\n", " ").strip()


def run(label: str, command: str, cwd: Path, env: dict[str, str], log: Path) -> tuple[int, float]:
    print(f"--- {label}: {command}", flush=True)
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
    print("\n".join(tail))
    print(f"--- {label}: exit {proc.returncode} in {seconds:.0f} s (log: {log})", flush=True)
    return proc.returncode, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tests", action="store_true", help="Run the quick start only.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder.")
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="clamp2-fresh-"))
    fresh = top / "clamp2-engine"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(fresh)], check=True)
    assert not (top / "shared").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAMP2_", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", CLAMP2_HOME=str(top / "home"), HF_HOME=str(top / "hf"))
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    rows, failed = [], False
    quick = readme_command("quickstart")
    base = (  # the base install alone (a wheel, not editable) searches what the quick start made
        "python3 -m venv ../base-venv && . ../base-venv/bin/activate && pip install -q torch==2.13.0 && "
        "pip install -q . && clamp2-engine search 'a chorale by J.S. Bach' -c demo -k 3"
    )
    steps = [
        ("quick start", quick, "README's first command"),
        ("quick start, second run", quick, "the same again"),
        (
            "base install searches",
            base,
            "`pip install .` (no extras), then `clamp2-engine search ... -c demo`",
        ),
    ]
    if not args.no_tests:  # what CI runs: installs, `ruff check`, then the README's test command
        steps.append(
            (
                "tests (CI)",
                "CI=true bash .ci/run",
                f"`bash .ci/run` (`{readme_command('tests').split('&&')[-1].strip()}`)",
            )
        )
    for label, command, shown in steps:
        rc, seconds = run(label, command, fresh, env, top / f"{label.replace(' ', '_')}.log")
        rows.append([label, shown, "passed" if rc == 0 else f"exit {rc}", f"{seconds:.0f} s"])
        failed |= rc != 0
    load = os.getloadavg()[0]
    write_section(
        "fresh-clone",
        "\n".join(
            [
                "## Fresh clone (`benchmarks/fresh_clone.py`)",
                "",
                "`git clone` into an empty temporary folder (no `../shared` beside it), `HF_HUB_OFFLINE=1`, then the "
                "README's commands exactly as printed. The first run includes creating the venv and installing "
                "everything (pip's cache warm); the second run of the quick start reuses the installed venv.",
                "",
                table(["step", "command", "result", "wall time"], rows),
                "",
                f"Machine: {machine()}; 1-minute load average at the end {load:.1f}.",
            ]
        ),
    )
    if not args.keep:
        shutil.rmtree(top, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
