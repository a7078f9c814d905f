"""Memory and time of `clamp2-engine export onnx` for the full-size CLaMP 2 (random weights, XLM-R base
shape): each precision exported in a process of its own, its peak resident memory (the largest process
of the export: the command, or a worker it starts) and its wall time.

    python benchmarks/bench_export.py [--dtypes int8,fp32] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine, table, write_section  # noqa: E402

TEXT_MODEL = ROOT / "tests" / "fixtures" / "clamp2-parity" / "text_model"


def tree_rss(root: int) -> dict[int, int]:
    """Resident bytes of ``root`` and every process below it (the export's workers hang off its
    multiprocessing fork server, whose children ``RUSAGE_CHILDREN`` never sees)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * page
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        found[pid] = rss.get(pid, 0)
        todo += children.get(pid, [])
    return found


def export(ckpt: Path, out: Path, dtype: str) -> tuple[float, float, str]:
    """(peak RSS in GiB of the largest process of the export, seconds, worst cosine), sampled every 0.1 s."""
    import json

    command = [
        sys.executable, "-m", "clamp2_engine", "export", "onnx", "--model", str(ckpt), "--text-model",
        str(TEXT_MODEL), "--out", str(out), "--dtype", dtype, "--json",
    ]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max([peak, *tree_rss(proc.pid).values()])
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"export {dtype} failed:\n{stderr[-2000:]}")
    report = json.loads(stdout[stdout.index("{") :])
    worst = min(report.get("verification", {}).values() or [float("nan")])
    return peak / 2**30, seconds, f"{worst:.7f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", default="int8,fp32")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    import torch

    from clamp2_engine.checkpoints import save_checkpoint
    from clamp2_engine.models import CLaMP2Config, CLaMP2Model

    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        ckpt = save_checkpoint(Path(tmp) / "base.pth", CLaMP2Model(CLaMP2Config()).state_dict())
        for dtype in args.dtypes.split(","):
            peak, seconds, worst = export(ckpt, Path(tmp) / f"onnx-{dtype}", dtype)
            rows.append([dtype, f"{peak:.1f} GiB", f"{seconds:.0f} s", worst])
            print(rows[-1], flush=True)
    md = "\n".join(
        [
            "## ONNX export: memory and time (`benchmarks/bench_export.py`)",
            "",
            f"{machine()}; load average {load:.1f}. Full-size CLaMP 2 (random weights), `clamp2-engine export "
            "onnx --dtype D`, each in a process of its own; peak RSS of the largest process of the export (the "
            "command or one of its workers; /proc sampled every 0.1 s). Each graph is traced in the command's "
            "process and optimized (and quantized) in a worker process of its own, and the text tower is "
            "traced, optimized and quantized without its 768 MB word table, which is written once into the "
            "finished graph's data file (`clamp2_engine/exporters/word_table.py`). The int8 export peaked at "
            "15.5 GB in one process before (this machine), 11.4 GB on the AVX2-only EPYC of issue 26, and "
            "about 10.9 GB in its text worker with the workers alone (measured in the session that added this "
            "table trick; an earlier version of this script read `RUSAGE_CHILDREN`, which misses the workers, "
            "and reported 5.0 GiB). Issue 26's goal: 4 GB.",
            "",
            table(["precision", "peak RSS", "wall time", "worst cosine vs PyTorch fp32"], rows),
        ]
    )
    print(md)
    if not args.no_write:
        write_section("export", md)


if __name__ == "__main__":
    main()
