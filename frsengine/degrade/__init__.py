"""Degradation synthesis (Sec. 4.1, Eq. 10; Sec. 3.1.2, Eq. 8): for each HQ face one fully
degraded LQ image and the single degradations (blur, noise, jpeg, downup) of the same face.

    from frsengine.degrade import Degrader
    deg = Degrader("paper", backend="torch")
    batch = deg(hq_uint8_or_float_bchw, seed=0, indices=range(len(hq)))
    batch.lq_full, batch.lq_singles[:, SINGLES.index("noise")], batch.params

Backends share one interface (`run(hq, params, preset, singles)`): `torch` (batched, CPU or
CUDA), `opencv` (per image, real JPEG codec: the faithful baseline) and `dali` (NVIDIA DALI
pipeline: GPU when there is one, CPU otherwise).
"""
from __future__ import annotations

import importlib
from typing import NamedTuple, Sequence

import torch

from frsengine.degrade.params import SampleParams, sample_params
from frsengine.degrade.presets import PRESETS, SINGLES, Preset, get_preset, parse_override
from frsengine.errors import FrsError, MissingDependencyError

__all__ = [
    "BACKENDS", "DegradedBatch", "Degrader", "PRESETS", "Preset", "SINGLES", "SampleParams",
    "get_backend", "get_preset", "parse_override", "sample_params",
]

# name -> (module, class, pip package that provides what it imports)
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "torch": ("frsengine.degrade.torch_backend", "TorchBackend", None),
    "opencv": ("frsengine.degrade.opencv_backend", "OpenCVBackend", None),
    "dali": ("frsengine.degrade.dali_backend", "DaliBackend", "nvidia-dali-cuda130"),
}


def get_backend(name: str, device: str | torch.device | None = None):
    """Instantiate a degradation backend by name."""
    if name not in BACKENDS:
        raise FrsError(f"unknown degradation backend '{name}': choose one of {sorted(BACKENDS)}")
    module, cls, pip_name = BACKENDS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(exc.name or pip_name or name, f"the '{name}' degradation backend",
                                     pip_name) from exc
    backend = getattr(mod, cls)
    return backend(device=device) if name != "opencv" else backend()


class DegradedBatch(NamedTuple):
    """One batch of training/evaluation pairs; images are float32 (B,3,H,W) in [0,1]."""

    hq: torch.Tensor
    lq_full: torch.Tensor
    lq_singles: torch.Tensor | None  # (B, len(SINGLES), 3, H, W), in SINGLES order
    params: list[SampleParams]

    def single(self, name: str) -> torch.Tensor:
        if self.lq_singles is None:
            raise FrsError("this batch was made without single degradations (singles=False)")
        return self.lq_singles[:, SINGLES.index(name)]


class Degrader:
    """Draws per-sample parameters from a preset and runs a backend on HQ batches."""

    def __init__(self, preset: str | Preset = "paper", backend: str = "torch", *,
                 device: str | torch.device | None = None, singles: bool = True,
                 overrides: dict[str, object] | None = None):
        self.preset = get_preset(preset, overrides)
        self.backend = get_backend(backend, device)
        self.singles = singles

    def params(self, seed: int, indices: Sequence[int], epoch: int = 0) -> list[SampleParams]:
        return sample_params(self.preset, seed, indices, epoch)

    def __call__(self, hq: torch.Tensor, params: list[SampleParams] | None = None, *,
                 seed: int = 0, indices: Sequence[int] | None = None, epoch: int = 0) -> DegradedBatch:
        if hq.dim() != 4 or hq.shape[1] != 3:
            raise FrsError(f"HQ batch must be (B,3,H,W), got shape {tuple(hq.shape)}")
        if params is None:
            params = self.params(seed, range(hq.shape[0]) if indices is None else indices, epoch)
        if len(params) != hq.shape[0]:
            raise FrsError(f"{len(params)} parameter sets for a batch of {hq.shape[0]} images")
        hq = hq.float().div_(255.0) if hq.dtype == torch.uint8 else hq.float()
        full, singles = self.backend.run(hq, params, self.preset, self.singles)
        return DegradedBatch(hq.to(full.device), full, singles, list(params))
