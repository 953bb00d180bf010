"""Fused supernet execution (frsengine.nas.fused) against the plain cells: outputs, every gradient
(weights, alpha, beta) and BN running statistics, for both tiny supernets and every fused mode
(keep, recompute, checkpoint: the checkpoint recompute must not update the statistics again).

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
from frsengine.nas.fused import FUSED_MODES, frozen, use_fused_search

OUT_RTOL, GRAD_RTOL, STATS_RTOL = 1e-9, 1e-7, 1e-9


def _close(got, want, rtol, what, floor=1e-12):
    err = (got - want).abs().max().item()
    scale = max(want.abs().max().item(), floor)
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol:g} * {scale:.3g}"


def _pair(network, mode="keep"):
    torch.manual_seed(0)
    plain = build_supernet(network, "tiny").double().train()
    fused = copy.deepcopy(plain)
    assert use_fused_search(fused, mode=mode) >= 1
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
@pytest.mark.parametrize("mode", FUSED_MODES)
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_fused_supernet_matches_plain(network, mode, layout, monkeypatch):
    """channels_last: the CPU default (nodes and mixed-op kernels run NHWC); contiguous: the GPU's."""
    monkeypatch.setenv("FRSENGINE_CONV_LAYOUT", layout)
    plain, fused = _pair(network, mode)
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["cuda", "triton", "reference"])
def test_fused_supernet_on_gpu(backend, monkeypatch):
    """On CUDA, every implementation of the fused path against the plain cells (MFPSNet tiny).

    float64 for the CUDA kernels and the reference; the Triton kernels accumulate in float32, so
    their case runs in float32 with float32 tolerances (outputs 1e-4, gradients 2e-3).
    """
    from frsengine.ops import dispatch
    if dispatch.unavailable_reason(backend, torch.device("cuda")) is not None:
        pytest.skip(dispatch.unavailable_reason(backend, torch.device("cuda")))
    monkeypatch.setenv(dispatch.ENV_VAR, backend)
    # TF32 convolutions (cuDNN's default) would differ between the two paths by ~1e-3.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    dtype = torch.float32 if backend == "triton" else torch.float64
    out_rtol, grad_rtol = (1e-4, 2e-3) if dtype == torch.float32 else (OUT_RTOL, GRAD_RTOL)
    plain, fused = _pair("mfpsnet")
    plain, fused = plain.to("cuda", dtype), fused.to("cuda", dtype)
    args, kwargs = _inputs(plain)
    args = tuple(a.to("cuda", dtype) for a in args)
    kwargs = {k: {n: t.to("cuda", dtype) for n, t in v.items()} for k, v in kwargs.items()}
    lp, outs_p = _loss(plain, args, kwargs)
    lf, outs_f = _loss(fused, args, kwargs)
    for a, b in zip(outs_f, outs_p):
        _close(a, b, out_rtol, "output")
    lp.backward()
    lf.backward()
    # In float32 a gradient that is a near-cancelling sum (a BatchNorm weight's, ~1e-7 where others
    # are ~1e-3) has rounding error of its terms' size, not its own: scale those by the largest.
    largest = max(p.grad.abs().max().item() for p in plain.parameters() if p.grad is not None)
    floor = 1e-3 * largest if dtype == torch.float32 else 1e-12
    for (name, pp), pf in zip(plain.named_parameters(), fused.parameters()):
        if pp.grad is not None:
            _close(pf.grad, pp.grad, grad_rtol, f"grad {name}", floor)


@pytest.mark.parametrize("mode", FUSED_MODES)
def test_fused_eval_mode_matches_plain(mode):
    plain, fused = _pair("frsnet", mode)
    args, kwargs = _inputs(plain)
    _loss(plain, args, kwargs), _loss(fused, args, kwargs)   # one training step of statistics
    plain.eval(), fused.eval()
    with torch.no_grad():
        _close(fused(*args), plain(*args), OUT_RTOL, "eval output")


@pytest.mark.parametrize("mode", FUSED_MODES)
def test_arch_step_with_frozen_weights(mode):
    """The architecture gradients are the same when the weights are frozen; no weight gradients."""
    plain, fused = _pair("frsnet", mode)
    args, kwargs = _inputs(plain)
    _loss(plain, args, kwargs)[0].backward()
    with frozen(fused.weight_parameters()):
        _loss(fused, args, kwargs)[0].backward()
    assert all(p.grad is None for p in fused.weight_parameters())
    assert all(p.requires_grad for p in fused.weight_parameters())
    for pp, pf in zip(plain.arch_parameters(), fused.arch_parameters()):
        _close(pf.grad, pp.grad, GRAD_RTOL, "arch grad")


def test_switch_back_to_plain():
    _, fused = _pair("frsnet")
    assert use_fused_search(fused, enabled=False) == 1
    assert not any(getattr(m, "fused", False) for m in fused.modules())


def test_authors_search_model_sizes_and_fused_path():
    """The authors' search model: 108 arch parameters (one prior grid), ~17.8 M weights (theirs: 17.6 M),
    and the fused path gives its outputs and architecture gradients."""
    from pathlib import Path

    from frsengine.models.prior_search import PriorSearchNet
    from frsengine.nas.genotype import load_genotype

    up = load_genotype(Path(__file__).resolve().parents[2] / "configs" / "genotypes" / "frsnet-seed0.json")
    torch.manual_seed(0)
    plain = PriorSearchNet(up).double().train()
    assert sum(p.numel() for p in plain.arch_parameters()) == 108
    assert 17.0e6 < sum(p.numel() for p in plain.weight_parameters()) < 18.5e6
    fused = copy.deepcopy(plain)
    assert use_fused_search(fused) == 1
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)  # float64 and 17.8 M weights: the smallest size
    priors = {"parsing": torch.rand(2, 19, 16, 16, dtype=torch.float64)}
    out_p = plain(x, priors)
    F.l1_loss(out_p, x).backward()
    with frozen(fused.weight_parameters()):
        out_f = fused(x, priors)
        F.l1_loss(out_f, x).backward()
    _close(out_f, out_p, OUT_RTOL, "output")
    assert all(p.grad is None for p in fused.weight_parameters())
    for pp, pf in zip(plain.arch_parameters(), fused.arch_parameters()):
        _close(pf.grad, pp.grad, GRAD_RTOL, "arch grad")


@pytest.mark.parametrize("mode", FUSED_MODES)
def test_fused_supernet_under_bf16_autocast(mode):
    """Under bf16 autocast the fused path runs (mixed-op convolutions in bf16, epilogues in float32)
    and stays near the float32 plain path: outputs within 5e-3 (measured ~1e-3), architecture
    gradients pointing the same way (cosine measured 0.89 for this tiny FRSNet at initialisation,
    the same as the plain path under autocast). The op-level numerics are in
    tests/ops/test_mixed_precision.py."""
    plain, fused = _pair("frsnet", mode)
    plain, fused = plain.float(), fused.float()
    args, kwargs = _inputs(plain)
    args = tuple(a.float() for a in args)
    lp, outs_p = _loss(plain, args, kwargs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lf, outs_f = _loss(fused, args, kwargs)
    for a, b in zip(outs_f, outs_p):
        _close(a.float(), b, 5e-3, "bf16 output")
    lp.backward()
    lf.backward()
    for p in fused.parameters():
        assert p.grad is None or bool(torch.isfinite(p.grad).all())
    gp = torch.cat([p.grad.flatten() for p in plain.arch_parameters()])
    gf = torch.cat([p.grad.flatten() for p in fused.arch_parameters()])
    assert F.cosine_similarity(gp, gf, 0) > 0.8


def _saved_bytes(model, args, kwargs):
    """Bytes of the tensors one forward saves for backward, counted per save (tensors saved inside
    checkpointed regions are dropped by the checkpoint and do not reach this hook)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _loss(model, args, kwargs)
    return total[0]


def test_fused_modes_hold_less_in_that_order():
    """keep > balanced > recompute > checkpoint in what the forward keeps for backward (MFPSNet tiny)."""
    held = {}
    for mode in FUSED_MODES:
        _, fused = _pair("mfpsnet", mode)
        held[mode] = _saved_bytes(fused, *_inputs(fused))
    assert held["keep"] > held["balanced"] > held["recompute"] > held["checkpoint"], held


def test_balanced_mode_recomputes_the_two_finest_levels():
    from frsengine.nas.fused import node_mode

    sizes = [(16, 16), (32, 32), (64, 64), (128, 128)]
    assert [node_mode("balanced", s, sizes) for s in sizes] == ["keep", "keep", "recompute", "recompute"]
    down = [(128, 128), (64, 64), (32, 32), (16, 16)]    # a downsampling grid: the same by resolution
    assert [node_mode("balanced", s, down) for s in down] == ["recompute", "recompute", "keep", "keep"]
    assert {node_mode(m, (16, 16), sizes) for m in ("keep", "recompute", "checkpoint")} == {"keep", "recompute",
                                                                                           "checkpoint"}


def test_unknown_fused_mode_is_refused():
    plain, _ = _pair("frsnet")
    with pytest.raises(ValueError, match="fused mode 'fast'"):
        use_fused_search(plain, mode="fast")


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_mixed_ops_see_the_node_layout(layout, monkeypatch):
    """Every fused mixed op gets its input in the node's layout (no layout copy inside the op)."""
    from frsengine.ops import fused_mixed

    monkeypatch.setenv("FRSENGINE_CONV_LAYOUT", layout)
    seen = []
    forward = fused_mixed._forward

    def spy(x, *args):
        seen.append(fused_mixed.memory_format_of(x))
        return forward(x, *args)

    monkeypatch.setattr(fused_mixed, "_forward", spy)
    _, fused = _pair("frsnet")
    args, kwargs = _inputs(fused)
    _loss(fused, args, kwargs)[0].backward()
    want = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert seen and set(seen) == {want}, set(seen)
