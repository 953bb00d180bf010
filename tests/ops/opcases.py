"""Shared oracles and helpers of the fused-op tests (imported as ``opcases``: pytest puts this
folder on sys.path).

The oracle of the mixed op is ``frsengine.nas.ops.MixedOp`` (default op set: nn.Conv2d,
nn.BatchNorm2d, ReLU) under plain autograd; the oracle of the aggregation is F.interpolate
(bilinear, align_corners=True) plus the weighted sum. Each implementation runs through the public
``frsengine::*`` ops with FRSENGINE_KERNELS forcing it.
"""
from __future__ import annotations

import copy
import random

import pytest
import torch

from frsengine.nas.ops import MixedOp, get_op_set
from frsengine.ops import dispatch

CPU = torch.device("cpu")


def backend_or_skip(backend: str, op: str = "mixed_op") -> None:
    if backend == "triton" and not dispatch.triton_interpreted():
        pytest.skip("Triton on CPU runs in a subprocess under TRITON_INTERPRET=1 (test_triton.py)")
    reason = dispatch.unavailable_reason(backend, CPU)
    if reason is not None:
        pytest.skip(f"{backend} unavailable: {reason}")


def sample_shapes(count: int, seed: int, channels=(4, 64), sizes=(8, 64), batch=(1, 4)):
    """(N, C, H, W) drawn with a fixed seed: covers the ranges without a full grid."""
    rng = random.Random(seed)
    return [(rng.randint(*batch), rng.randint(*channels), rng.randint(*sizes), rng.randint(*sizes))
            for _ in range(count)]


def random_mixed_op(channels: int, training: bool, dtype=torch.float32) -> MixedOp:
    """A default-op-set MixedOp with non-trivial BN affine parameters and running statistics."""
    m = MixedOp(channels, get_op_set("default")).to(dtype).train(training)
    with torch.no_grad():
        for op in m.ops[1:]:
            op.bn.weight.uniform_(0.5, 1.5)
            op.bn.bias.uniform_(-0.2, 0.2)
            op.bn.running_mean.uniform_(-0.2, 0.2)
            op.bn.running_var.uniform_(0.5, 1.5)
            op.bn.num_batches_tracked.fill_(3)
    return m


def oracle_pair(channels: int, training: bool, dtype=torch.float32):
    oracle = random_mixed_op(channels, training, dtype)
    return oracle, copy.deepcopy(oracle)


def assert_close(got: torch.Tensor, want: torch.Tensor, rtol: float, what: str) -> None:
    """Max-norm relative check: |got - want|_inf <= rtol * max(|want|_inf, 1e-3)."""
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    err = (got - want).abs().max().item()
    scale = max(want.abs().max().item(), 1e-3)
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol:g} * {scale:.3g}"
