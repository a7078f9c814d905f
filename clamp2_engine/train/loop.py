"""The one training loop both objectives share: one process or many (DDP), CPU or CUDA.

AdamW, constant schedule with warm-up, mixed precision on CUDA, gradient accumulation, evaluation
every epoch or every N steps, ``best.pth`` / ``latest.pth`` in the reference checkpoint layout (written
atomically by the main process), exact resume (optimizer, scheduler, scaler, step and the position in
the epoch), ``metrics.jsonl`` and a Rich progress display.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from clamp2_engine.checkpoints import save_checkpoint
from clamp2_engine.errors import about
from clamp2_engine.runlog import ErrorLog
from clamp2_engine.train.build import freeze_unused, set_dropout
from clamp2_engine.train.config import BEST, ERRORS, LATEST, METRICS, LoopConfig
from clamp2_engine.train.distributed import DistInfo, barrier, mean_across
from clamp2_engine.train.report import Display, MetricsLog, fmt

Step = Callable[[nn.Module, dict], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class TrainingError(ValueError):
    """A run that cannot start (too little data, nothing to resume, ...); the message is for the user."""


@dataclass
class TrainTask:
    """What the loop trains: ``module`` (its ``.model`` is checkpointed), data and the loss step."""

    kind: str
    module: nn.Module
    train_set: Dataset
    eval_set: Dataset | None
    collate: Callable[[list], dict]
    step: Step
    record: dict[str, Any] = field(default_factory=dict)  # settings written into every checkpoint


@dataclass
class State:
    step: int = 0
    epoch: int = 0  # completed epochs (the reference's ``epoch``)
    batches: int = 0  # micro-batches already consumed in the current epoch (this process)
    best_epoch: int = 0
    best_step: int = 0
    min_eval_loss: float = math.inf


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that can start part-way into an epoch (a resumed run skips what it did)."""

    skip = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return max(0, super().__len__() - self.skip)


def amp_settings(precision: str, device: torch.device) -> tuple[bool, torch.dtype]:
    """(autocast on?, its dtype), ``precision`` resolved by the engine's one resolver (``auto``: bf16 on
    GPUs that have it, else fp16; on a CPU bf16 where it is native, else fp32)."""
    from clamp2_engine.runtime.precision import resolve

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[resolve(precision, device)]
    return dtype != torch.float32, dtype


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


def loader(
    dataset: Dataset,
    sampler: DistributedSampler,
    cfg: LoopConfig,
    collate: Callable,
    drop_last: bool,
    device: torch.device,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=collate,
        drop_last=drop_last,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
    )


class Trainer:
    """Holds the run's objects; :meth:`fit` runs it."""

    def __init__(
        self, task: TrainTask, cfg: LoopConfig, info: DistInfo, resume: dict[str, Any] | None = None
    ):
        self.task, self.cfg, self.info = task, cfg, info
        self.device = info.device
        self.model = task.module.to(self.device)
        if cfg.dropout is not None:
            set_dropout(self.model, cfg.dropout)
        freeze_unused(self.model)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True
        )
        from transformers import get_constant_schedule_with_warmup

        self.scheduler = get_constant_schedule_with_warmup(self.optimizer, cfg.warmup_steps)
        self.amp, self.amp_dtype = amp_settings(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp and self.amp_dtype == torch.float16
        )
        self.state = State()
        if resume is not None:
            self.restore(resume)
        self.ddp: nn.Module = self.model
        if info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.metrics = MetricsLog(cfg.out / METRICS, enabled=info.is_main)
        self.errors = ErrorLog(cfg.out / ERRORS)
        self.logged_errors: set[str] = set()
        self.sampler = ResumableSampler(
            task.train_set, info.world_size, info.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size // cfg.grad_accum
        if self.steps_per_epoch == 0:
            need = cfg.batch_size * info.world_size * cfg.grad_accum
            raise about(
                TrainingError(
                    f"the training set has {len(task.train_set)} item(s); one optimizer step needs "
                    f"{need} (batch size x processes x accumulation): lower the batch size"
                ),
                "batch_size",
            )
        self.total = min(cfg.max_steps or math.inf, cfg.epochs * self.steps_per_epoch)
        self.last_saved = self.last_eval = self.state.step if resume is not None else -1

    # -- checkpoints --
    def restore(self, ckpt: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["lr_sched"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if isinstance(ckpt.get("rng"), torch.Tensor):
            torch.set_rng_state(ckpt["rng"])
        batches = int(ckpt.get("batches_in_epoch", 0))
        if "epoch_samples" in ckpt:  # another batch size or process count: the same position in the epoch
            per_micro = self.cfg.batch_size * self.info.world_size
            batches = int(ckpt["epoch_samples"]) // per_micro // self.cfg.grad_accum * self.cfg.grad_accum
        self.state = State(
            step=int(ckpt.get("step", 0)),
            epoch=int(ckpt["epoch"]),
            batches=batches,
            best_epoch=int(ckpt["best_epoch"]),
            best_step=int(ckpt.get("best_step", 0)),
            min_eval_loss=float(ckpt["min_eval_loss"]),
        )

    def save(self, name: str) -> None:
        s = self.state
        save_checkpoint(
            self.cfg.out / name,
            self.model.model.state_dict(),
            self.optimizer.state_dict(),
            self.scheduler.state_dict(),
            s.epoch,
            s.best_epoch,
            s.min_eval_loss,
            step=s.step,
            batches_in_epoch=s.batches,
            epoch_samples=s.batches * self.cfg.batch_size * self.info.world_size,
            best_step=s.best_step,
            scaler=self.scaler.state_dict(),
            rng=torch.get_rng_state(),
            kind=self.task.kind,
            **self.task.record,
        )

    def checkpoint(self, display: Display, evaluate: bool = True) -> dict[str, float] | None:
        """Evaluate (all processes), then write ``best`` when it improved and ``latest`` (main process)."""
        evaluate = evaluate and self.task.eval_set is not None and self.last_eval != self.state.step
        if not evaluate and self.last_saved == self.state.step:
            return None
        result = self.evaluate() if evaluate else None
        improved = result is not None and result["loss"] < self.state.min_eval_loss
        if improved:
            self.state.min_eval_loss, self.state.best_epoch = result["loss"], self.state.epoch
            self.state.best_step = self.state.step
        if self.info.is_main:
            if improved:
                self.save(BEST)
            self.save(LATEST)
            if result is not None:
                self.metrics.write(
                    "eval", step=self.state.step, epoch=self.state.epoch, best=improved, **result
                )
                extra = "".join(f"  {k} {fmt(v)}" for k, v in result.items() if k not in ("loss", "samples"))
                display.note(
                    f"step {self.state.step} eval loss {fmt(result['loss'])}{extra}"
                    + ("  [green]best[/green]" if improved else "")
                )
            self.metrics.write("checkpoint", step=self.state.step, epoch=self.state.epoch, best=improved)
        barrier(self.info)
        self.last_saved = self.state.step
        if result is not None:
            self.last_eval = self.state.step
        return result

    # -- evaluation --
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss (and metrics) over the evaluation set, weighted by batch size, averaged over processes."""
        sampler = DistributedSampler(self.task.eval_set, self.info.world_size, self.info.rank, shuffle=False)
        self.model.eval()
        totals: dict[str, float] = {}
        count = 0
        try:
            for batch in loader(self.task.eval_set, sampler, self.cfg, self.task.collate, False, self.device):
                self.log_errors(batch)
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                    loss, extra = self.task.step(self.model, to_device(batch, self.device))
                n = batch["size"]
                for k, v in {"loss": loss, **extra}.items():
                    totals[k] = totals.get(k, 0.0) + float(v) * n
                count += n
        finally:
            self.model.train()
        keys = sorted(totals)
        means = mean_across(self.info, [totals[k] / max(count, 1) for k in keys])
        return {**dict(zip(keys, means, strict=True)), "samples": len(self.task.eval_set)}

    def log_errors(self, batch: dict[str, Any]) -> None:
        for source, reason in batch.get("errors", ()):
            if source not in self.logged_errors:
                self.logged_errors.add(source)
                self.errors.add(source, "train-data", reason)

    # -- training --
    def fit(self) -> dict[str, Any]:
        cfg, s = self.cfg, self.state
        per_step = cfg.batch_size * self.info.world_size * cfg.grad_accum
        micro_per_epoch = self.steps_per_epoch * cfg.grad_accum
        self.metrics.write(
            "start",
            step=s.step,
            epoch=s.epoch,
            total_steps=self.total,
            steps_per_epoch=self.steps_per_epoch,
            global_batch=per_step,
            processes=self.info.world_size,
            device=str(self.device),
            precision=str(self.amp_dtype).replace("torch.", "") if self.amp else "float32",
        )
        started, start_step = time.perf_counter(), s.step
        window: dict[str, Any] = {}
        window_steps, window_start = 0, time.perf_counter()
        title = f"train {self.task.kind}"
        with Display(title, int(self.total), s.step, self.info.is_main and cfg.progress) as display:
            while s.step < self.total and s.epoch < cfg.epochs:
                self.sampler.set_epoch(s.epoch)
                self.sampler.skip = s.batches * cfg.batch_size
                self.task.train_set.set_epoch(s.epoch)
                self.model.train()
                for batch in loader(
                    self.task.train_set, self.sampler, cfg, self.task.collate, True, self.device
                ):
                    self.log_errors(batch)
                    s.batches += 1
                    sync = s.batches % cfg.grad_accum == 0
                    ctx = self.ddp.no_sync() if self.info.distributed and not sync else nullcontext()
                    with ctx:
                        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                            loss, extra = self.task.step(self.ddp, to_device(batch, self.device))
                        self.scaler.scale(loss / cfg.grad_accum).backward()
                    for k, v in {"loss": loss, **extra}.items():  # kept on the device: no sync per step
                        window[k] = window.get(k, 0.0) + v.detach().float() / cfg.grad_accum
                    if not sync:
                        continue
                    self.optimizer_step()
                    s.step += 1
                    window_steps += 1
                    if s.step % cfg.log_every == 0 or s.step == self.total:
                        keys = sorted(window)
                        means = dict(
                            zip(
                                keys,
                                mean_across(self.info, [float(window[k]) / window_steps for k in keys]),
                                strict=True,
                            )
                        )
                        speed = window_steps * per_step / max(time.perf_counter() - window_start, 1e-9)
                        lr = self.scheduler.get_last_lr()[0]
                        self.metrics.write(
                            "train", step=s.step, epoch=s.epoch, lr=lr, samples_per_s=speed, **means
                        )
                        display.update(s.step, means["loss"], lr, speed)
                        window, window_steps, window_start = {}, 0, time.perf_counter()
                    else:
                        display.update(s.step)
                    epoch_end = s.batches >= micro_per_epoch
                    if epoch_end:
                        s.epoch, s.batches = s.epoch + 1, 0
                        self.metrics.write("epoch", step=s.step, epoch=s.epoch)
                    if (cfg.eval_every and s.step % cfg.eval_every == 0) or (
                        epoch_end and not cfg.eval_every
                    ):
                        self.checkpoint(display)
                    elif epoch_end or (cfg.save_every and s.step % cfg.save_every == 0):
                        self.checkpoint(display, evaluate=False)
                    if epoch_end or s.step >= self.total:
                        break
                else:  # the loader ran out early (cannot happen with drop_last; never loop forever)
                    s.epoch, s.batches = s.epoch + 1, 0
            self.checkpoint(display)
        seconds = time.perf_counter() - started
        done = s.step - start_step
        return {
            "kind": self.task.kind,
            "steps": s.step,
            "epochs": s.epoch,
            "steps_this_run": done,
            "samples_per_s": round(done * per_step / seconds, 3) if done else None,
            "best_eval_loss": s.min_eval_loss if math.isfinite(s.min_eval_loss) else None,
            "best_step": s.best_step if math.isfinite(s.min_eval_loss) else None,
            "seconds": round(seconds, 1),
            "latest": str(self.cfg.out / LATEST),
            "best": str(self.cfg.out / BEST) if (self.cfg.out / BEST).exists() else None,
        }

    def optimizer_step(self) -> None:
        if self.cfg.max_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
