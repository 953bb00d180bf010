"""Data parallelism under ``torchrun``: the process group, the device of each rank, DDP wrapping.

Launched by ``torchrun --nproc-per-node N -m frsengine.cli search ...`` the environment holds
RANK / WORLD_SIZE / LOCAL_RANK; the backend is NCCL on CUDA and gloo on CPU. Run alone, every
helper here is a no-op, so the same code runs single-process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from frsengine.errors import FrsError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = torch.cuda.is_available() if device in (None, "auto") else str(device).startswith("cuda")
    if want_cuda and not torch.cuda.is_available():
        raise FrsError(f"device {device!r} asked for but CUDA is not available: use device cpu")
    dev = torch.device("cuda", local % torch.cuda.device_count()) if want_cuda else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if want_cuda:
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if want_cuda else "gloo")
    return DistInfo(rank, world, local, dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, info: DistInfo, find_unused: bool = False) -> nn.Module:
    """DDP around ``model`` when there are several ranks (gradients averaged across ranks;
    ``find_unused`` for steps that leave parameter sets frozen, as the alternating search does)."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=find_unused)


def mean(value: float, info: DistInfo) -> float:
    """Average a scalar over ranks (for logging)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank when it is true on any (e.g. one rank got SIGTERM: all stop together)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return bool(t.item() > 0)
