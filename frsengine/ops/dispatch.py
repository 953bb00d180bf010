"""Per-op registry of implementations and the choice between them.

Every fused op has up to four implementations with one contract (same inputs, same outputs):
``reference`` (plain PyTorch, always available), ``cpp`` (frsengine._C on CPU), ``cuda``
(frsengine._C on CUDA tensors) and ``triton`` (frsengine.kernels; on CPU only under the Triton
interpreter, ``TRITON_INTERPRET=1``, which is for testing, never picked automatically).

The fastest available one per device is used; ``FRSENGINE_KERNELS=reference|cpp|triton|cuda``
forces one (read on every call, so tests and benchmarks can switch it). A forced implementation
that cannot run on the tensors' device is an error, not a silent fallback: a benchmark must never
compare the reference against itself.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Callable

import torch

from frsengine.ops import _ext

BACKENDS = ("reference", "cpp", "triton", "cuda")
ENV_VAR = "FRSENGINE_KERNELS"

# Order of preference per device type; anything not listed only runs when forced.
_PREFERENCE = {"cpu": ("cpp", "reference"), "cuda": ("cuda", "triton", "reference")}


@dataclass(frozen=True)
class Implementation:
    forward: Callable
    backward: Callable


_REGISTRY: dict[str, dict[str, Implementation]] = {}


def register(op: str, backend: str, forward: Callable, backward: Callable) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {BACKENDS}")
    _REGISTRY.setdefault(op, {})[backend] = Implementation(forward, backward)


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def unavailable_reason(backend: str, device: torch.device) -> str | None:
    """None when ``backend`` can run on ``device``, else a human-readable reason."""
    if backend == "reference":
        return None
    if backend == "cpp":
        if device.type != "cpu":
            return f"the C++ kernels run on CPU tensors, got {device.type}"
        return _ext.problem()
    if backend == "cuda":
        if device.type != "cuda":
            return f"the CUDA kernels need CUDA tensors, got {device.type}"
        if _ext.problem() is not None:
            return _ext.problem()
        return None if _ext.has_cuda() else "frsengine._C was built without CUDA (no CUDA torch or nvcc at build time)"
    if backend == "triton":
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed"
        if device.type == "cpu" and not triton_interpreted():
            return "Triton runs on CPU tensors only under the interpreter (TRITON_INTERPRET=1 before importing triton)"
        if device.type not in ("cpu", "cuda"):
            return f"no Triton support for {device.type}"
        return None
    raise ValueError(f"unknown backend {backend!r}; known: {BACKENDS}")


def forced_backend() -> str | None:
    name = os.environ.get(ENV_VAR, "").strip().lower()
    if not name:
        return None
    if name not in BACKENDS:
        raise ValueError(f"{ENV_VAR}={name!r} is not one of {', '.join(BACKENDS)}")
    return name


def select(op: str, device: torch.device) -> tuple[str, Implementation]:
    """The implementation of ``op`` to run for tensors on ``device``."""
    impls = _REGISTRY[op]
    forced = forced_backend()
    if forced is not None:
        reason = unavailable_reason(forced, device) if forced in impls else "not implemented for this op"
        if reason is not None:
            raise RuntimeError(f"{ENV_VAR}={forced} cannot run {op} on {device.type}: {reason}")
        return forced, impls[forced]
    for name in _PREFERENCE.get(device.type, ("reference",)):
        if name in impls and unavailable_reason(name, device) is None:
            return name, impls[name]
    return "reference", impls["reference"]


def available_backends(op: str, device: torch.device | str) -> list[str]:
    """Implementations of ``op`` that can run on ``device`` right now."""
    device = torch.device(device)
    return [b for b in BACKENDS if b in _REGISTRY.get(op, {}) and unavailable_reason(b, device) is None]


def backend_for(op: str, device: torch.device | str) -> str:
    """Name of the implementation a call on ``device`` would use."""
    return select(op, torch.device(device))[0]
