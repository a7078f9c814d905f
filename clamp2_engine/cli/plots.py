"""Optional plots for the evaluation commands (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _figure(plot: Path):
    from matplotlib.figure import Figure  # missing: the CLI names the extra that installs it

    plot.parent.mkdir(parents=True, exist_ok=True)
    return Figure(figsize=(7, 5), layout="constrained")


def plot_ranks(plot: Path, ranks: Sequence[float], title: str) -> None:
    import numpy as np

    fig = _figure(plot)
    ax = fig.subplots()
    r = np.asarray([x for x in ranks if x is not None and np.isfinite(x)], dtype=float)
    top = max(2.0, float(r.max()) if r.size else 2.0)
    ax.hist(r, bins=np.unique(np.logspace(0, np.log10(top + 1), 40).astype(int)), color="#4c72b0")
    ax.set_xscale("log")
    ax.set_xlabel("rank of the true item")
    ax.set_ylabel("queries")
    ax.set_title(title)
    fig.savefig(plot, dpi=120)


def plot_confusion(plot: Path, confusion: list[list[int]], labels: Sequence[str], title: str) -> None:
    import numpy as np

    cm = np.asarray(confusion)
    fig = _figure(plot)
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            color = "white" if cm[i, j] > cm.max() / 2 else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set_title(title)
    fig.savefig(plot, dpi=120)
