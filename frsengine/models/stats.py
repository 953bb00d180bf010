"""Parameter and FLOP counts, computed on the meta device (no memory, no compute)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModelStats:
    params: int          # trainable weights (alpha/beta excluded)
    arch_params: int     # alpha + beta entries (supernets only)
    flops: int           # forward FLOPs per batch, conv/matmul only, 2 FLOPs per multiply-add
    batch: int

    @property
    def gflops_per_image(self) -> float:
        return self.flops / self.batch / 1e9

    @property
    def gmacs_per_image(self) -> float:
        return self.gflops_per_image / 2


def count_stats(model: nn.Module, inputs: tuple, kwargs: dict | None = None) -> ModelStats:
    """Counts for one forward of ``model(*inputs, **kwargs)``; works with meta tensors."""
    arch = list(model.arch_parameters()) if hasattr(model, "arch_parameters") else []
    arch_ids = {id(p) for p in arch}
    params = sum(p.numel() for p in model.parameters() if id(p) not in arch_ids)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*inputs, **(kwargs or {}))
    batch = inputs[0].shape[0]
    return ModelStats(params, sum(p.numel() for p in arch), counter.get_total_flops(), batch)


def example_inputs(model: nn.Module, size: int = 128, batch: int = 1, device="meta") -> tuple[tuple, dict]:
    """Positional and keyword inputs of one forward of an FRSNet/MFPSNet model."""
    cfg = model.cfg
    x = torch.zeros(batch, cfg.in_channels, size, size, device=device)
    if model.network_name == "frsnet":
        return (x,), {}
    priors = {p.name: torch.zeros(batch, p.channels, size, size, device=device) for p in cfg.priors}
    return (x,), {"priors": priors}
