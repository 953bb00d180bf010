"""Fused supernet execution (frsengine.nas.fused) against the plain cells: outputs, every gradient
(weights, alpha, beta) and BN running statistics, for both tiny supernets and both keep modes.

Run in float64 so that only real differences show (the 1x1 conv moved before the resize and the
batched branches sum in another order, which float32 rounding would blur): max-norm errors relative
to the plain path's largest entry, 1e-9 for outputs and statistics, 1e-7 for gradients.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from frsengine.models import build_supernet
from frsengine.models.stats import example_inputs
from frsengine.nas.fused import frozen, use_fused_search

OUT_RTOL, GRAD_RTOL, STATS_RTOL = 1e-9, 1e-7, 1e-9


def _close(got, want, rtol, what):
    err = (got - want).abs().max().item()
    scale = max(want.abs().max().item(), 1e-12)
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol:g} * {scale:.3g}"


def _pair(network, keep):
    torch.manual_seed(0)
    plain = build_supernet(network, "tiny").double().train()
    fused = copy.deepcopy(plain)
    assert use_fused_search(fused, keep=keep) >= 1
    return plain, fused


def _inputs(model, batch=2, size=32):
    torch.manual_seed(1)
    args, kwargs = example_inputs(model, size=size, batch=batch, device="cpu")
    args = tuple(torch.rand_like(a, dtype=torch.float64) for a in args)
    kwargs = {k: {n: torch.rand_like(t, dtype=torch.float64) for n, t in v.items()} for k, v in kwargs.items()}
    return args, kwargs


def _loss(model, args, kwargs):
    out = model(*args, **kwargs)
    outs = out if isinstance(out, tuple) else (out,)
    return sum(F.l1_loss(o, args[0]) for o in outs), outs


@pytest.mark.parametrize("network", ["frsnet", "mfpsnet"])
@pytest.mark.parametrize("keep", [True, False], ids=["keep", "recompute"])
def test_fused_supernet_matches_plain(network, keep):
    plain, fused = _pair(network, keep)
    args, kwargs = _inputs(plain)
    lp, outs_p = _loss(plain, args, kwargs)
    lf, outs_f = _loss(fused, args, kwargs)
    for i, (a, b) in enumerate(zip(outs_f, outs_p)):
        _close(a, b, OUT_RTOL, f"output {i}")
    lp.backward()
    lf.backward()
    for (name, pp), pf in zip(plain.named_parameters(), fused.parameters()):
        assert (pp.grad is None) == (pf.grad is None), name
        if pp.grad is not None:
            _close(pf.grad, pp.grad, GRAD_RTOL, f"grad {name}")
    for (name, bp), bf in zip(plain.named_buffers(), fused.buffers()):
        if bp.dtype == torch.long:
            assert torch.equal(bf, bp), name
        elif bp.dtype.is_floating_point:
            _close(bf, bp, STATS_RTOL, name)


def test_fused_eval_mode_matches_plain():
    plain, fused = _pair("frsnet", True)
    args, kwargs = _inputs(plain)
    _loss(plain, args, kwargs), _loss(fused, args, kwargs)   # one training step of statistics
    plain.eval(), fused.eval()
    with torch.no_grad():
        _close(fused(*args), plain(*args), OUT_RTOL, "eval output")


def test_arch_step_with_frozen_weights():
    """The architecture gradients are the same when the weights are frozen; no weight gradients."""
    plain, fused = _pair("frsnet", True)
    args, kwargs = _inputs(plain)
    _loss(plain, args, kwargs)[0].backward()
    with frozen(fused.weight_parameters()):
        _loss(fused, args, kwargs)[0].backward()
    assert all(p.grad is None for p in fused.weight_parameters())
    assert all(p.requires_grad for p in fused.weight_parameters())
    for pp, pf in zip(plain.arch_parameters(), fused.arch_parameters()):
        _close(pf.grad, pp.grad, GRAD_RTOL, "arch grad")


def test_switch_back_to_plain():
    _, fused = _pair("frsnet", True)
    assert use_fused_search(fused, enabled=False) == 1
    assert not any(getattr(m, "fused", False) for m in fused.modules())
