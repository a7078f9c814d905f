"""Run settings for M3 and CLaMP 2 training (the click commands fill these; tests build them directly)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clamp2_engine.runtime.precision import check

LATEST, BEST = "latest.pth", "best.pth"
METRICS, CONFIG, ERRORS = "metrics.jsonl", "config.json", "errors.jsonl"


@dataclass
class LoopConfig:
    """Everything the shared loop needs; defaults are the reference's where it has one."""

    out: Path
    epochs: int = 100
    max_steps: int | None = None  # optimizer steps in total (a resumed run counts the steps already done)
    batch_size: int = 16  # per process; the global batch is batch_size * processes * grad_accum
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01  # torch's AdamW default, as the reference
    warmup_steps: int = 1000
    max_grad_norm: float | None = None  # the reference does not clip
    eval_every: int | None = None  # steps; None: at the end of every epoch
    save_every: int | None = None  # steps between `latest` checkpoints (besides every evaluation)
    log_every: int = 10
    eval_split: float = 0.01
    precision: str = "auto"
    device: str | None = None
    workers: int = 0
    seed: int = 0
    dropout: float | None = None  # None keeps the models' own (0.1); 0 makes runs deterministic
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        check(self.precision)
        for name in ("epochs", "batch_size", "grad_accum", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if not 0.0 <= self.eval_split < 1.0:
            raise ValueError("eval_split must be in [0, 1)")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")


@dataclass
class M3Options:
    """M3 pre-training: data, shape of a fresh model and the masking objective."""

    data: list[Path]
    eval_data: list[Path] = field(default_factory=list)
    init: str | None = None  # checkpoint path or registry name
    hidden_size: int | None = None  # None: 768, or the --init checkpoint's
    num_layers: int | None = None  # None: 12
    decoder_layers: int | None = None  # None: 3
    patch_size: int | None = None  # None: 64
    patch_length: int | None = None  # None: 512
    mask_ratio: float = 0.45


@dataclass
class CLaMP2Options:
    """CLaMP 2 contrastive training: items, towers and text handling."""

    items: Path
    eval_items: Path | None = None
    init: str | None = None  # a full CLaMP 2 checkpoint
    m3: str | None = None  # an M3 checkpoint for the music tower
    text_model: str | None = None  # XLM-R folder or Hub name (config + tokenizer, weights when present)
    hidden_size: int | None = None  # music tower; None: 768 or from --m3
    num_layers: int | None = None
    patch_size: int | None = None
    patch_length: int | None = None
    text_hidden_size: int | None = None  # any text size given: the text tower is random-initialised
    text_layers: int | None = None
    text_intermediate: int | None = None
    embed_dim: int | None = None  # None: 768, or the loaded checkpoint's
    max_text_length: int | None = None  # None: the --init checkpoint's window, else MAX_TEXT_LENGTH
    text_dropout: bool = True
    logit_scale: float = 1.0
    keep_instruments: float = 0.1  # probability of keeping instrument names in training (reference: 0.1)

    def text_overrides(self) -> dict[str, int]:
        pairs = {
            "hidden_size": self.text_hidden_size,
            "num_hidden_layers": self.text_layers,
            "intermediate_size": self.text_intermediate,
        }
        return {k: v for k, v in pairs.items() if v is not None}


def jsonable(obj: Any) -> Any:
    """Dataclasses, paths and infinities as plain JSON values."""
    if hasattr(obj, "__dataclass_fields__"):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(jsonable(obj), ensure_ascii=False, sort_keys=False)
