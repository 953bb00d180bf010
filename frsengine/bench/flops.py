"""FLOP counts with ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products
(forward and backward), 2 FLOPs per multiply-add; pointwise ops, normalisation, resampling and the
optimizer update are not counted (they are memory-bound, and small next to the convolutions).

A counted call runs for real (on the meta device torch's Python meta kernels are slower than the
CPU itself). For fully convolutional networks the count is proportional to the pixel count, so a
search step is counted at a small size and scaled (:func:`scaled_flops`; tests check the scaling).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


class _NoModuleTracking:
    """Stands in for FlopCounterMode's module tracker: only the total is used here, and tracking
    every module's forward and backward made counting a supernet step ~6x slower (25 s instead of
    4 s for the tiny FRSNet supernet on a 2-core CPU)."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def count_flops(run: Callable[[], object]) -> int:
    """FLOPs of one ``run()`` (forward, and backward where it calls it)."""
    counter = FlopCounterMode(display=False)
    if hasattr(counter, "mod_tracker"):
        counter.mod_tracker = _NoModuleTracking()
    with counter:
        run()
    return int(counter.get_total_flops())


def scaled_flops(flops_at: Callable[[int], int], size: int, count_size: int = 32) -> int:
    """FLOPs at ``size`` x ``size`` from a count at ``count_size``: conv FLOPs scale with the area."""
    count_size = min(count_size, size)
    return int(round(flops_at(count_size) * (size / count_size) ** 2))


def forward_flops_per_face(model: torch.nn.Module, size: int = 128, device: str = "cpu") -> int:
    """Forward FLOPs of one face through an FRSNet/MFPSNet ``model`` (its example inputs)."""
    from frsengine.models.stats import example_inputs

    def at(s: int) -> int:
        args, kwargs = example_inputs(model, size=s, batch=1, device=device)
        with torch.inference_mode():
            return count_flops(lambda: model(*args, **kwargs))

    return scaled_flops(at, size)
