"""Fused beta-weighted aggregation vs F.interpolate (bilinear, align_corners=True) + weighted sum.

Tolerances (float32, max-norm relative): forward and input gradients 1e-5, beta gradient 1e-4
(a sum over every output element, accumulated in double by the native kernels and in float by
the oracle). float64 gradcheck: torch defaults.
"""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from frsengine.ops.beta_aggregation import aggregate, beta_aggregate
from opcases import assert_close

BACKENDS = ["reference", "cpp", "triton"]


def _cases(count, seed, channels=(4, 64), sizes=(8, 64), batch=(1, 4)):
    """Grid-node-like cases: target size plus 1-3 inputs at half, same and double resolution
    (odd sizes included), drawn with a fixed seed."""
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        n, c = rng.randint(*batch), rng.randint(*channels)
        h, w = rng.randint(*sizes), rng.randint(*sizes)
        k = rng.randint(1, 3)
        srcs = rng.sample([((h + 1) // 2, (w + 1) // 2), (h, w), (2 * h, 2 * w), (h + 3, w - 1)], k)
        cases.append((n, c, (h, w), srcs))
    return cases


CASES = _cases(6, seed=7)
SMALL_CASES = _cases(3, seed=8, channels=(2, 4), sizes=(4, 9), batch=(1, 2))


def _oracle(xs, beta, size):
    out = None
    for x, b in zip(xs, beta):
        r = x if tuple(x.shape[-2:]) == size else F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        out = b * r if out is None else out + b * r
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_oracle(backend, use_backend):
    use_backend(backend)
    for n, c, size, srcs in (SMALL_CASES if backend == "triton" else CASES):
        xs = [torch.randn(n, c, *s, requires_grad=True) for s in srcs]
        beta = torch.rand(len(xs), requires_grad=True)
        want, got = _oracle(xs, beta, size), aggregate(xs, beta, size)
        assert_close(got, want, 1e-5, f"forward {size} {srcs}")
        g = torch.randn_like(want)
        wants, gots = torch.autograd.grad(want, [*xs, beta], g), torch.autograd.grad(got, [*xs, beta], g)
        for i, (gw, gg) in enumerate(zip(wants[:-1], gots[:-1])):
            assert_close(gg, gw, 1e-5, f"grad input {i} {srcs} -> {size}")
        assert_close(gots[-1], wants[-1], 1e-4, f"grad beta {srcs} -> {size}")


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_gradcheck_float64(backend, use_backend, single_thread):
    use_backend(backend)
    xs = [torch.randn(2, 2, *s, dtype=torch.float64, requires_grad=True) for s in ((3, 4), (5, 7), (9, 13))]
    beta = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: beta_aggregate(list(t[:3]), t[3], 5, 7), (*xs, beta))


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend, use_backend, single_thread):
    use_backend(backend)
    xs = [torch.randn(2, 3, *s, requires_grad=True) for s in ((4, 4), (8, 8), (16, 15))]
    beta = torch.rand(3, requires_grad=True)
    torch.library.opcheck(torch.ops.frsengine.beta_aggregate.default, (xs, beta, 8, 8))
    g = torch.randn(2, 3, 8, 8)
    torch.library.opcheck(torch.ops.frsengine.beta_aggregate_backward.default,
                          (g, [x.detach() for x in xs], beta.detach(), True),
                          test_utils=("test_schema", "test_faketensor"))


def test_beta_as_scalars_and_only_beta_grad(use_backend):
    """The grid passes 0-dim slices of its beta tensor; the architecture step needs only grad beta."""
    use_backend("reference")
    betas = torch.rand(2, 3, requires_grad=True)
    xs = [torch.randn(1, 2, 4, 4), torch.randn(1, 2, 8, 8)]
    out = aggregate(xs, [betas[0, 1], betas[1, 2]], (8, 8))
    (g,) = torch.autograd.grad(out.sum(), [betas])
    assert g[0, 1] != 0 and g[1, 2] != 0 and g.count_nonzero() == 2


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="1..3 inputs"):
        beta_aggregate([torch.randn(1, 1, 2, 2)] * 4, torch.ones(4), 2, 2)
    with pytest.raises(ValueError, match="beta must have shape"):
        beta_aggregate([torch.randn(1, 1, 2, 2)], torch.ones(2), 2, 2)
    with pytest.raises(ValueError, match="shared N, C"):
        beta_aggregate([torch.randn(1, 1, 2, 2), torch.randn(1, 2, 2, 2)], torch.ones(2), 2, 2)
