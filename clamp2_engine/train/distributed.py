"""Process-group setup for ``torchrun`` (NCCL on GPUs, gloo on CPU); one process is the same code path."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from clamp2_engine.runtime.torch_runtime import pick_device as base_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # this code initialised the process group (and tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(device: str | None, local_rank: int, world_size: int) -> torch.device:
    """``device`` or the best available; under DDP each process takes the GPU of its local rank."""
    dev = base_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if world_size > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    return dev


def init_distributed(device: str | None = None) -> DistInfo:
    """Read torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and join the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = pick_device(device, local, world)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owns = True
    return DistInfo(rank, world, local, dev, owns)


def shutdown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def mean_across(info: DistInfo, values: list[float]) -> list[float]:
    """Average a few floats over the processes (identity for one process)."""
    if not info.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return (t / info.world_size).tolist()
