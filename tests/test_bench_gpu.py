"""The GPU benchmark's smoke mode on CPU: every strategy runs, agrees with the reference, and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_gpu_quick_on_cpu(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_gpu.py"),
            "--device",
            "cpu",
            "--quick",
            "--no-write",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")][1:]
    names = [row.split(" | ")[0].strip("| ") for row in rows]
    assert names == [
        "reference strategy (fp32, 1 file a pass)",
        "engine torch fp32",
        "engine torch bf16",
        "engine onnxruntime CPU fp32",
    ]
    cosines = {name: float(row.rstrip(" |").split(" | ")[-1]) for name, row in zip(names, rows, strict=True)}
    assert cosines["engine torch fp32"] >= 0.99999
    assert cosines["engine onnxruntime CPU fp32"] >= 0.99999
    assert cosines["engine torch bf16"] >= 0.99
