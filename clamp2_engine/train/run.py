"""Entry points: ``run_m3`` and ``run_clamp2`` read the data, build the model and hand both to the loop.

>>> from clamp2_engine.train.config import LoopConfig, M3Options
>>> from clamp2_engine.train.run import run_m3
>>> run_m3(LoopConfig(out="runs/m3", max_steps=100), M3Options(data=[Path("abc/")], hidden_size=128))
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

from clamp2_engine.checkpoints import load_checkpoint
from clamp2_engine.errors import about
from clamp2_engine.paths import atomic_write_text, iter_files
from clamp2_engine.runlog import ErrorLog
from clamp2_engine.train.build import build_clamp2_model, build_m3_model
from clamp2_engine.train.config import CONFIG, ERRORS, LATEST, CLaMP2Options, LoopConfig, M3Options, jsonable
from clamp2_engine.train.data import MUSIC_SUFFIXES, M3Dataset, collate_m3
from clamp2_engine.train.distributed import DistInfo, barrier, init_distributed, shutdown
from clamp2_engine.train.items import PairCollate, PairDataset, load_pairs
from clamp2_engine.train.loop import Trainer, TrainingError, TrainTask
from clamp2_engine.train.objectives import CLaMP2Objective, M3Objective

T = TypeVar("T")


def split(items: Sequence[T], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """(train, eval): a seeded shuffle, the first ``int(fraction * n)`` (at least one when asked) to eval.
    Every process draws the same split."""
    if fraction <= 0 or len(items) < 2:
        return list(items), []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(len(items) * fraction))
    held = set(order[:n_eval])
    return [x for i, x in enumerate(items) if i not in held], [items[i] for i in sorted(held)]


def prepare_out(cfg: LoopConfig, info: DistInfo) -> dict[str, Any] | None:
    """Check RUN_DIR for a fresh run or a resume; the latest checkpoint when resuming."""
    latest = cfg.out / LATEST
    if cfg.resume:
        if not latest.is_file():
            raise TrainingError(f"nothing to resume: {latest} does not exist")
        return load_checkpoint(latest)
    if latest.exists():
        raise about(
            TrainingError(
                f"{cfg.out} already holds a run ({LATEST}): resume it, or choose another run folder"
            ),
            "resume",
        )
    if info.is_main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        (cfg.out / ERRORS).unlink(missing_ok=True)
    barrier(info)
    return None


def write_config(cfg: LoopConfig, info: DistInfo, record: dict[str, Any]) -> None:
    """``config.json``: the run's settings, model shape and data counts (kept as first written on resume)."""
    path = cfg.out / CONFIG
    if info.is_main and not (cfg.resume and path.exists()):
        atomic_write_text(
            path,
            json.dumps(
                jsonable({**record, "loop": cfg, "processes": info.world_size}), indent=2, ensure_ascii=False
            )
            + "\n",
        )


def log_rejected(cfg: LoopConfig, info: DistInfo, rejected: list[tuple[str, str]]) -> None:
    if info.is_main and rejected:
        log = ErrorLog(cfg.out / ERRORS)
        for source, reason in rejected:
            log.add(source, "load", reason)


def music_files(roots: Sequence[Path], rejected: list[tuple[str, str]] | None = None) -> list[Path]:
    """The .abc / .mtf files under ``roots``; files that are no regular file (or link out of their
    folder) go to ``rejected`` as ``(path, reason)``."""
    files: list[Path] = []
    for root in roots:
        if not Path(root).exists():
            raise TrainingError(f"no such file or folder: {root}")
        files.extend(
            iter_files(
                root,
                MUSIC_SUFFIXES,
                rejected=lambda p, r: rejected.append((str(p), r)) if rejected is not None else None,
            )
        )
    return files


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def run_m3(cfg: LoopConfig, opts: M3Options) -> dict[str, Any]:
    """Pre-train (or continue) M3 on ``.abc`` / ``.mtf`` trees."""
    info = init_distributed(cfg.device)
    try:
        resume = prepare_out(cfg, info)
        rejected: list[tuple[str, str]] = []
        files = music_files(opts.data, rejected)
        if opts.eval_data:
            train_files, eval_files = files, music_files(opts.eval_data, rejected)
        else:
            train_files, eval_files = split(files, cfg.eval_split, cfg.seed)
        log_rejected(cfg, info, rejected)
        if not train_files:
            raise TrainingError(f"no .abc or .mtf file under {', '.join(map(str, opts.data))}")
        _seed(cfg.seed)
        model = build_m3_model(opts, resume["model"] if resume else None)
        mc = model.config
        kw = {
            "patch_size": mc.patch_size,
            "patch_length": mc.patch_length,
            "mask_ratio": opts.mask_ratio,
            "seed": cfg.seed,
        }
        task = TrainTask(
            "m3",
            M3Objective(model),
            M3Dataset(train_files, train=True, **kw),
            M3Dataset(eval_files, train=False, **kw) if eval_files else None,
            collate_m3,
            M3Objective.step,
            record={"patch_size": mc.patch_size, "patch_length": mc.patch_length},
        )
        write_config(
            cfg,
            info,
            {
                "kind": "m3",
                "options": opts,
                "model": mc.as_dict(),
                "train_items": len(train_files),
                "eval_items": len(eval_files),
                "eval_files": [os.fspath(f) for f in eval_files],
            },
        )
        return Trainer(task, cfg, info, resume).fit()
    finally:
        shutdown(info)


MIN_EVAL = 8  # evaluation items below which eval loss and accuracy say little


def with_eval_warning(summary: dict[str, Any], n_eval: int) -> dict[str, Any]:
    """``summary`` with a warning when the evaluation set is too small to mean anything."""
    if 0 < n_eval < MIN_EVAL:
        summary["warning"] = (
            f"only {n_eval} evaluation item(s): eval loss and accuracy say little (give --eval-items, or a "
            "larger --eval-split)"
        )
    return summary


def text_record(text_spec: str) -> str:
    """How a checkpoint names its text model: an absolute folder, or a Hub name as given."""
    path = Path(text_spec).expanduser()
    return os.fspath(path.resolve()) if path.is_dir() else text_spec


def _text_spec(cfg: LoopConfig, opts: CLaMP2Options) -> str:
    """``--text-model``, else the one the resumed run used, else the default (XLM-R base)."""
    from clamp2_engine.checkpoints import default_text_model

    if opts.text_model:
        return opts.text_model
    if cfg.resume and (cfg.out / CONFIG).is_file():
        saved = json.loads((cfg.out / CONFIG).read_text(encoding="utf-8")).get("text_model")
        if saved:
            return saved
    return default_text_model(opts.init)  # a known --init brings its own (the demo's tokenizer)


def run_clamp2(cfg: LoopConfig, opts: CLaMP2Options) -> dict[str, Any]:
    """Train (or fine-tune) CLaMP 2 on the pairs of a seed JSONL."""
    from clamp2_engine.models.factory import load_text_assets

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    info = init_distributed(cfg.device)
    try:
        resume = prepare_out(cfg, info)
        items, rejected = load_pairs(opts.items)
        if opts.eval_items:
            eval_items, eval_rejected = load_pairs(opts.eval_items)
            rejected += eval_rejected
            train_items = items
        else:
            train_items, eval_items = split(items, cfg.eval_split, cfg.seed)
        log_rejected(cfg, info, rejected)
        if not train_items:
            raise TrainingError(
                f"no usable item in {opts.items} ({len(rejected)} rejected; see {cfg.out / ERRORS})"
            )
        text_spec = _text_spec(cfg, opts)
        hf_config, tokenizer = load_text_assets(text_spec)
        _seed(cfg.seed)
        model, origin = build_clamp2_model(opts, hf_config, text_spec, resume["model"] if resume else None)
        if len(tokenizer) > model.config.text.vocab_size:
            raise TrainingError(
                f"tokenizer {text_spec!r} has {len(tokenizer)} tokens but the text tower has "
                f"{model.config.text.vocab_size}"
            )
        mc = model.config
        kw = {
            "patch_size": mc.music.patch_size,
            "patch_length": mc.music.patch_length,
            "max_text_length": mc.max_text_length,  # --max-text-length, else --init's window, else 128
            "text_dropout": opts.text_dropout,
            "keep_instruments": opts.keep_instruments,
            "seed": cfg.seed,
        }
        objective = CLaMP2Objective(model, opts.logit_scale)
        task = TrainTask(
            "clamp2",
            objective,
            PairDataset(train_items, tokenizer, train=True, **kw),
            PairDataset(eval_items, tokenizer, train=False, **kw) if eval_items else None,
            PairCollate(tokenizer.pad_token_id),
            objective.step,
            # read back by clamp2_engine.loading, so our checkpoints need no --max-text-length (the
            # reference ignores extra keys)
            record={
                "max_text_length": mc.max_text_length,
                "patch_size": mc.music.patch_size,
                "patch_length": mc.music.patch_length,
                "text_model": text_record(text_spec),
            },
        )
        write_config(
            cfg,
            info,
            {
                "kind": "clamp2",
                "options": opts,
                "text_model": text_spec,
                "origin": origin,
                "model": mc.as_dict(),
                "train_items": len(train_items),
                "eval_items": len(eval_items),
                "rejected_items": len(rejected),
                "eval_keys": [it.key for it in eval_items],
            },
        )
        return with_eval_warning(Trainer(task, cfg, info, resume).fit(), len(eval_items))
    finally:
        shutdown(info)
