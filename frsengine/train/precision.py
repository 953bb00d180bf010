"""``model.precision``: the dtype the forward passes of search and retrain run in.

``fp32`` runs everything in float32. ``bf16`` runs each step's forward passes and loss (and the
retrain validation forward passes) under ``torch.autocast(device_type, dtype=torch.bfloat16)``:
autocast's op lists pick the ops (convolutions, matmuls) that run in bfloat16. Parameters, gradients,
optimizer states and the validation metrics stay float32; backward and the optimizer step run
outside autocast. bfloat16 has float32's exponent range, so no gradient scaling is needed.
"""
from __future__ import annotations

import contextlib

import torch

from frsengine.train.config import ConfigError


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN with AVX512-BF16 or AMX); without, bf16
    ops are emulated and slower than float32."""
    if not torch.backends.mkldnn.is_available():
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


def check_precision(precision: str, device: torch.device, key: str = "model.precision") -> str | None:
    """Raise ConfigError where ``precision`` cannot run on ``device``; return a warning (text) where it
    runs but slowly, else None."""
    if precision != "bf16":
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{key}=bf16 needs a GPU with bfloat16 support, and "
                          f"{torch.cuda.get_device_name(device)} has none: use {key}=fp32")
    if device.type == "cpu" and not cpu_has_native_bf16():
        return (f"{key}=bf16 on a CPU without native bfloat16 (AVX512-BF16 / AMX): bf16 is emulated "
                f"and will be slower than fp32 ({key}=fp32)")
    return None


def autocast(precision: str, device: torch.device, cache: bool = True):
    """The context a step's forward pass and loss run in: bf16 autocast on ``device``'s type, or
    nothing. ``cache=False``: no cast-weight cache (required inside a CUDA-graph capture)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()
