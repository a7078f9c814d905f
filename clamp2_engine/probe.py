"""Linear probe on raw features, as CLaMP 2's ``music_classification`` (reference section 5).

Model: raw features ``[L, H]`` -> ``Linear(H, H)`` -> ReLU -> mean over L -> ``Linear(H, C)``;
cross-entropy on the logits (the reference applies a softmax first; argmax predictions are the same);
AdamW at a constant learning rate (1e-5 default; the reference builds a warm-up schedule but then
re-creates its optimizer, so its training runs at a constant rate too); the state of the epoch with the
best evaluation accuracy is kept and training stops after ``patience`` epochs without improvement. Labels
come from file names ``label_rest.npy``. Batches of variable-length features are zero-padded and
averaged with a mask, so a batch gives the same outputs as one item at a time.

Probe files are ``torch.save`` of a plain dict (``state_dict``, ``labels``, ``config``, ``metrics``) and
load with ``weights_only=True``; the reference's own checkpoints (``model`` + ``labels``) load too.
"""

from __future__ import annotations

import copy
import io
import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clamp2_engine.runtime.torch_runtime import pick_device

from .evaluate import FeatureError, open_feature_array
from .paths import atomic_write_bytes, iter_files

FORMAT = "clamp2-engine/linear-probe"
VERSION = 1


class LinearProbe(nn.Module):
    """``Linear(H, H)`` -> ReLU -> masked mean over L -> ``Linear(H, C)``; module names as the reference."""

    def __init__(self, input_size: int, num_classes: int, hidden_size: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size or input_size)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size or input_size, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, C]`` for features ``[B, L, H]`` (``mask`` ``[B, L]``: 1 for real rows)."""
        h = self.relu(self.fc1(x))
        if mask is None:
            pooled = h.mean(dim=1)
        else:
            m = mask.to(h.dtype).unsqueeze(-1)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)
        return self.fc2(pooled)


# --- feature files ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureFile:
    path: Path
    label: str
    length: int
    hidden: int


def label_of(path: str | os.PathLike) -> str:
    """The label of ``label_rest.npy``: the file name up to its first ``_``."""
    name = Path(path).name
    if "_" not in name or name.startswith("_"):
        raise FeatureError(f"file name {name!r} has no label: expected 'LABEL_rest.npy'")
    return name.split("_")[0]


def _shape(path: str | os.PathLike, check_values: bool = False) -> tuple[int, int]:
    """``(L, H)`` of a raw feature file, from its header (and a finiteness check when ``check_values``)."""
    arr = open_feature_array(path, mmap=True)
    shape = tuple(arr.shape)
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    elif len(shape) == 1:
        shape = (1, *shape)
    if len(shape) != 2:
        raise FeatureError(f"expected raw features [1, L, H] or [L, H], got shape {list(arr.shape)}")
    if shape[0] == 0 or shape[1] == 0:
        raise FeatureError(f"empty feature, shape {list(arr.shape)}")
    if check_values and not np.isfinite(arr).all():
        raise FeatureError("feature contains NaN or infinite values")
    return int(shape[0]), int(shape[1])


def load_feature(path: str | os.PathLike, hidden: int | None = None) -> np.ndarray:
    """A raw feature file as float32 ``[L, H]`` (``[1, L, H]``, ``[L, H]`` and ``[H]`` accepted)."""
    length, h = _shape(path)
    if hidden is not None and h != hidden:
        raise FeatureError(f"feature size {h} does not match the expected {hidden}")
    arr = np.load(path, allow_pickle=False).reshape(length, h).astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise FeatureError("feature contains NaN or infinite values")
    return arr


def scan_features(
    dirs: Iterable[str | os.PathLike],
    labelled: bool = True,
    hidden: int | None = None,
    check_values: bool = True,
) -> tuple[list[FeatureFile], list[tuple[str, str]]]:
    """Every ``.npy`` under ``dirs`` with its label and shape; ``(path, reason)`` for unusable ones.

    Files are memory-mapped, not kept. Files whose hidden size differs from ``hidden`` (default: the
    most common one) are errors.
    """
    files: list[FeatureFile] = []
    errors: list[tuple[str, str]] = []
    for d in dirs:
        if not Path(d).exists():
            raise FileNotFoundError(f"feature folder not found: {d}")
        for path in iter_files(d, {".npy"}, rejected=lambda p, r: errors.append((os.fspath(p), r))):
            try:
                label = label_of(path) if labelled else ""
                length, h = _shape(path, check_values)
            except FeatureError as exc:
                errors.append((os.fspath(path), str(exc)))
                continue
            files.append(FeatureFile(path, label, length, h))
    if files:
        want = hidden or Counter(f.hidden for f in files).most_common(1)[0][0]
        errors += [
            (os.fspath(f.path), f"feature size {f.hidden} does not match the expected {want}")
            for f in files
            if f.hidden != want
        ]
        files = [f for f in files if f.hidden == want]
    return files, errors


def known_labels(
    files: Sequence[FeatureFile], train: Sequence[FeatureFile]
) -> tuple[list[FeatureFile], list[tuple[str, str]]]:
    """The evaluation ``files`` whose label the ``train`` files have, and ``(path, reason)`` for the rest
    (a probe cannot predict a label it never saw)."""
    known = {f.label for f in train}
    kept = [f for f in files if f.label in known]
    refused = [
        (str(f.path), f"label {f.label!r} is not among the training labels")
        for f in files
        if f.label not in known
    ]
    return kept, refused


def split_eval(
    files: Sequence[FeatureFile], fraction: float = 0.2, seed: int = 42
) -> tuple[list[FeatureFile], list[FeatureFile]]:
    """Stratified split: about ``fraction`` of every label goes to evaluation, never a label's last file."""
    by_label: dict[str, list[FeatureFile]] = defaultdict(list)
    for f in files:
        by_label[f.label].append(f)
    rng = random.Random(seed)
    train, evaluation = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n_eval = min(max(1, round(len(group) * fraction)), len(group) - 1) if fraction > 0 else 0
        evaluation += group[:n_eval]
        train += group[n_eval:]
    return train, evaluation


class _Cache:
    """Loads features on demand; keeps them in memory while the total stays under ``limit`` bytes."""

    def __init__(self, hidden: int, limit: int):
        self.hidden, self.limit, self.used = hidden, limit, 0
        self.data: dict[Path, torch.Tensor] = {}

    def get(self, path: Path) -> torch.Tensor:
        t = self.data.get(path)
        if t is None:
            t = torch.from_numpy(load_feature(path, self.hidden))
            if self.used + t.numel() * 4 <= self.limit:
                self.data[path] = t
                self.used += t.numel() * 4
        return t


def _batch(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded ``[B, L, H]`` and mask ``[B, L]``."""
    longest = max(t.shape[0] for t in tensors)
    x = torch.zeros(len(tensors), longest, tensors[0].shape[1])
    mask = torch.zeros(len(tensors), longest)
    for i, t in enumerate(tensors):
        x[i, : t.shape[0]] = t
        mask[i, : t.shape[0]] = 1
    return x, mask


# --- metrics ----------------------------------------------------------------------------------------


def classification_report(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro F1 (over the labels present in truth or predictions, as scikit-learn) and the
    confusion matrix (rows: true label, columns: predicted)."""
    c = len(labels)
    cm = np.zeros((c, c), np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[t, p] += 1
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    denom = support + predicted
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    present = denom > 0
    n = int(cm.sum())
    return {
        "accuracy": float(tp.sum() / n) if n else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "per_label_f1": {labels[i]: float(f1[i]) for i in range(c)},
        "confusion": cm.tolist(),
        "labels": list(labels),
        "n": n,
    }


# --- training ---------------------------------------------------------------------------------------


@dataclass
class ProbeConfig:
    lr: float = 1e-5
    epochs: int = 1000
    patience: int = 20
    batch_size: int = 1
    balanced: bool = False
    eval_split: float = 0.2
    seed: int = 42
    device: str = "auto"
    cache_bytes: int = 2 << 30


@dataclass
class Probe:
    """A trained (or loaded) probe: the model, its labels (index order), config and metrics."""

    model: LinearProbe
    labels: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return int(self.model.fc1.in_features)


def _argmax(model: LinearProbe, tensors: Sequence[torch.Tensor], device: torch.device) -> list[int]:
    model.eval()
    with torch.no_grad():
        x, mask = _batch(tensors)
        return model(x.to(device), mask.to(device)).argmax(dim=1).tolist()


def _predict_batches(
    model: LinearProbe, paths: Sequence[Path], cache: _Cache, batch_size: int, device: torch.device
) -> list[int]:
    out: list[int] = []
    for start in range(0, len(paths), batch_size):
        out += _argmax(model, [cache.get(p) for p in paths[start : start + batch_size]], device)
    return out


def train_probe(
    train_files: Sequence[FeatureFile],
    eval_files: Sequence[FeatureFile] | None = None,
    config: ProbeConfig | None = None,
    on_epoch: Callable[[int, float, float, bool], None] | None = None,
) -> Probe:
    """Train a probe; ``eval_files=None`` holds out ``config.eval_split`` of ``train_files``.

    ``on_epoch(epoch, train_acc, eval_acc, improved)`` is called after every epoch. The returned probe
    holds the best epoch's weights and its evaluation metrics.
    """
    cfg = config or ProbeConfig()
    if eval_files is None:
        train_files, eval_files = split_eval(train_files, cfg.eval_split, cfg.seed)
    labels = sorted({f.label for f in train_files})
    if len(labels) < 2:
        raise ValueError(f"need at least two labels to train a probe, found {labels}")
    unknown = sorted({f.label for f in eval_files} - set(labels))
    if unknown:
        raise ValueError(f"evaluation labels not among the training labels: {unknown}")
    if not eval_files:
        raise ValueError("no evaluation files: give more files per label or an evaluation folder")
    hidden = train_files[0].hidden
    index = {lab: i for i, lab in enumerate(labels)}
    device = pick_device(cfg.device)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    cache = _Cache(hidden, cfg.cache_bytes)

    model = LinearProbe(hidden, len(labels)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    by_label: dict[str, list[FeatureFile]] = defaultdict(list)
    for f in train_files:
        by_label[f.label].append(f)
    per_class = min(len(v) for v in by_label.values())
    loss_fn = nn.CrossEntropyLoss()
    eval_paths = [f.path for f in eval_files]
    eval_true = [index[f.label] for f in eval_files]

    best_acc, best_epoch, best_state, best_pred = -1.0, 0, None, eval_true
    for epoch in range(1, cfg.epochs + 1):
        if cfg.balanced:  # the reference's BalancedTensorDataset: undersample every label per epoch
            order = [f for lab in labels for f in rng.sample(by_label[lab], per_class)]
        else:
            order = list(train_files)
        rng.shuffle(order)
        model.train()
        correct = 0
        for start in range(0, len(order), cfg.batch_size):
            chunk = order[start : start + cfg.batch_size]
            x, mask = _batch([cache.get(f.path) for f in chunk])
            y = torch.tensor([index[f.label] for f in chunk], device=device)
            logits = model(x.to(device), mask.to(device))
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(dim=1) == y).sum())
        pred = _predict_batches(model, eval_paths, cache, max(cfg.batch_size, 32), device)
        eval_acc = sum(p == t for p, t in zip(pred, eval_true, strict=True)) / len(eval_true)
        improved = eval_acc > best_acc
        if improved:
            best_acc, best_epoch, best_pred = eval_acc, epoch, pred
            best_state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
        if on_epoch:
            on_epoch(epoch, correct / len(order), eval_acc, improved)
        if epoch - best_epoch >= cfg.patience:
            break

    model.load_state_dict(best_state)
    model.to("cpu").eval()
    metrics = classification_report(eval_true, best_pred, labels)
    metrics.update(
        best_epoch=best_epoch, epochs_run=epoch, train_files=len(train_files), eval_files=len(eval_files)
    )
    conf = {
        **asdict(cfg),
        "input_size": hidden,
        "hidden_size": model.fc1.out_features,
        "num_classes": len(labels),
    }
    return Probe(model, labels, conf, metrics)


# --- save / load / predict --------------------------------------------------------------------------


def save_probe(probe: Probe, path: str | os.PathLike) -> None:
    """``torch.save`` of a plain dict, written atomically."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in probe.model.state_dict().items()},
        "labels": list(probe.labels),
        "config": copy.deepcopy(probe.config),
        "metrics": copy.deepcopy(probe.metrics),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_probe(path: str | os.PathLike) -> Probe:
    """Load a probe saved by :func:`save_probe` (or a reference ``weights-*.pth``), ``weights_only=True``."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(
            f"{path}: not a loadable probe file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a probe file")
    if data.get("format") == FORMAT:
        state, labels = data["state_dict"], list(data["labels"])
        config, metrics = dict(data.get("config", {})), dict(data.get("metrics", {}))
    elif "model" in data and isinstance(data.get("labels"), dict):  # reference train_cls.py checkpoint
        state = data["model"]
        labels = [lab for lab, _ in sorted(data["labels"].items(), key=lambda kv: kv[1])]
        config, metrics = {}, {"accuracy": data.get("max_eval_acc"), "best_epoch": data.get("best_epoch")}
    else:
        raise ValueError(f"{path}: not a probe file (no state_dict and labels)")
    try:
        hidden_in, hidden = state["fc1.weight"].shape[1], state["fc1.weight"].shape[0]
        model = LinearProbe(hidden_in, len(labels), hidden)
        model.load_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise ValueError(f"{path}: probe weights do not fit its {len(labels)} labels ({exc})") from exc
    return Probe(model.eval(), labels, config, metrics)


def predict(
    probe: Probe,
    files: Sequence[str | os.PathLike],
    batch_size: int = 32,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``{path: label}`` for every usable file and ``(path, reason)`` for the others."""
    errors: list[tuple[str, str]] = []
    loaded: list[tuple[Path, torch.Tensor]] = []
    out: dict[str, str] = {}
    dev = pick_device(device)
    model = probe.model.to(dev)

    def flush() -> None:
        pred = _argmax(model, [t for _, t in loaded], dev)
        out.update({os.fspath(p): probe.labels[i] for (p, _), i in zip(loaded, pred, strict=True)})
        if progress:
            progress(len(loaded))
        loaded.clear()

    for p in files:
        try:
            if (h := _shape(p)[1]) != probe.input_size:
                raise FeatureError(
                    f"feature size {h} does not match the probe's input size {probe.input_size}"
                )
            loaded.append((Path(p), torch.from_numpy(load_feature(p))))
        except FeatureError as exc:
            errors.append((os.fspath(p), str(exc)))
            continue
        if len(loaded) >= batch_size:
            flush()
    if loaded:
        flush()
    probe.model.to("cpu")
    return out, errors
