"""Write one benchmark's figures into its own section of ``docs/benchmarks.md``.

Each script owns the block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` and replaces it
whole on every run, so scripts never overwrite each other's figures.
"""

from __future__ import annotations

import os
import platform
import re
from datetime import date
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nFigures written by the scripts in `benchmarks/`; each section is replaced when its script runs.\n"


def machine() -> str:
    """One line describing where the figures were measured."""
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        runtime = f", torch {torch.__version__}"
    except ImportError:  # a script run outside the project's venv (fresh_clone.py): torch is the clone's
        import shutil

        gpu = "a GPU (nvidia-smi)" if shutil.which("nvidia-smi") else "no GPU"
        runtime = ""
    return (
        f"{cpu()}, {os.cpu_count()} CPU cores, {gpu}, Python {platform.python_version()}{runtime}, "
        f"{date.today().isoformat()}"
    )


def cpu() -> str:
    """The CPU's model name and the vector extensions that decide its speed (as ``lscpu`` shows them)."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "")
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    named = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX-512 BF16", "avx512_vnni": "VNNI"}
    named |= {"avx_vnni": "AVX-VNNI", "amx_tile": "AMX"}
    shown = [v for k, v in named.items() if k in flags]
    return f"{model or platform.machine()} ({', '.join(shown) or 'no AVX2'})"


def write_section(name: str, markdown: str, doc: Path = DOC) -> None:
    """Replace (or append) the section ``name`` of the benchmarks document with ``markdown``."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = doc.read_text(encoding="utf-8") if doc.exists() else HEADER
    block = f"<!-- {name}:start -->\n{markdown.strip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = (
        pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, doc)


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)
