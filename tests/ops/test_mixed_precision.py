"""Lower-precision convolutions in the fused mixed op (``conv_dtype``, taken from torch.autocast).

Policy: the three convolutions run in bfloat16 (inputs and kernels cast, fp32 accumulation inside
oneDNN), their outputs come back in float32; batch statistics, BN, ReLU, the alpha-weighted sum and
every returned gradient stay float32. The oracle is the reference implementation with the same
policy. Against it (max-norm, relative to the oracle's largest entry): forward and statistics 1e-5,
gradients 5e-3 (a bf16 rounding of one conv output may flip by one unit, 2^-8, between oneDNN
layouts). Against plain float32 the bf16 path differs by ~1e-3 (forward) to ~1e-1 (gradients of
x through training-mode BN), as plain autocast does: the checks below make sure it does differ,
so a path that silently stayed in float32 would fail.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from frsengine.ops import dispatch
from frsengine.ops.fused_mixed import mixed_op, mixed_op_module_forward
from opcases import assert_close, oracle_pair

BF16 = torch.bfloat16
FWD_RTOL, GRAD_RTOL, STATS_RTOL = 1e-5, 5e-3, 1e-5
SHAPES = [(3, 16, 20, 24), (2, 8, 13, 9)]


def _run(module, x, a, keep, autocast):
    module = copy.deepcopy(module)
    x, a = x.detach().requires_grad_(), a.detach().requires_grad_()
    with torch.autocast("cpu", dtype=BF16, enabled=autocast):
        out = mixed_op_module_forward(module, x, a, keep=keep)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(out, [x, a, *module.parameters()], g)
    return out, grads, list(module.buffers())


@pytest.mark.parametrize("backend,layout", [("cpp", "nchw"), ("cpp", "nhwc"), ("triton", "nchw")])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("keep", [True, False], ids=["keep", "recompute"])
def test_bf16_convs_match_reference_policy(backend, layout, training, keep, use_backend, monkeypatch):
    """nhwc: a channels_last input, on which the C++ kernels run NHWC."""
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    # The Triton interpreter takes seconds per shape: the small one only.
    for n, c, h, w in (SHAPES[1:] if backend == "triton" else SHAPES):
        module, _ = oracle_pair(c, training)
        x, a = torch.randn(n, c, h, w).contiguous(memory_format=fmt), torch.softmax(torch.randn(4), 0)
        monkeypatch.setenv(dispatch.ENV_VAR, "reference")
        want, want_grads, want_bufs = _run(module, x, a, keep, autocast=True)
        use_backend(backend)
        got, got_grads, got_bufs = _run(module, x, a, keep, autocast=True)
        assert got.dtype == torch.float32 and all(t.dtype == torch.float32 for t in got_grads)
        assert_close(got, want, FWD_RTOL, f"forward {backend} {(n, c, h, w)}")
        names = ["x", "alpha"] + [name for name, _ in module.named_parameters()]
        for name, gg, gw in zip(names, got_grads, want_grads):
            assert_close(gg, gw, GRAD_RTOL, f"grad {name} {backend} {(n, c, h, w)}")
        for bg, bw in zip(got_bufs, want_bufs):
            if bw.dtype.is_floating_point:
                assert_close(bg, bw, STATS_RTOL, f"running statistics {backend}")
        fp32, _, _ = _run(module, x, a, keep, autocast=False)
        assert (got - fp32).abs().max() > 1e-4 * fp32.abs().max(), "no bfloat16 rounding: convs ran in float32"


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_reference_policy_is_bf16_convolutions_only(training, use_backend):
    """The oracle itself, written out: bf16 convolutions, everything after them in float32."""
    use_backend("reference")
    module, _ = oracle_pair(6, training)
    x, a = torch.randn(2, 6, 11, 10), torch.softmax(torch.randn(4), 0)
    got, _, _ = _run(module, x, a, keep=False, autocast=True)
    want = a[0] * x
    for k, op in enumerate(module.ops[1:]):
        z = F.conv2d(x.to(BF16), op.conv.weight.to(BF16), padding=op.conv.padding).float()
        bn = op.bn
        y = F.batch_norm(z, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, training=training,
                         eps=bn.eps)
        want = want + a[k + 1] * F.relu(y)
    assert_close(got, want.detach(), 1e-6, "reference policy")


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_op_is_not_recast_by_autocast(backend, use_backend):
    """Called directly without conv_dtype, the op computes in float32 even inside autocast."""
    use_backend(backend)
    module, _ = oracle_pair(5, True)
    convs = module.ops[1:]
    stack = lambda attr: torch.stack([getattr(op.bn, attr) for op in convs]).detach()
    args = (torch.randn(2, 5, 9, 8), *(op.conv.weight.detach() for op in convs), stack("weight"), stack("bias"),
            torch.softmax(torch.randn(4), 0), stack("running_mean"), stack("running_var"), True, 1e-5)
    want = mixed_op(*args)[0]
    with torch.autocast("cpu", dtype=BF16):
        got = mixed_op(*args)[0]
    assert got.dtype == torch.float32
    assert_close(got, want, 1e-6, "mixed_op under autocast, no conv_dtype")


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_opcheck_with_conv_dtype(backend, use_backend, single_thread):
    use_backend(backend)
    module, _ = oracle_pair(3, True)
    convs = module.ops[1:]
    stack = lambda attr: torch.stack([getattr(op.bn, attr) for op in convs]).detach()
    args = (torch.randn(4, 3, 5, 6, requires_grad=True),
            *(op.conv.weight.detach().clone().requires_grad_() for op in convs),
            stack("weight").requires_grad_(), stack("bias").requires_grad_(),
            torch.softmax(torch.randn(4), 0).requires_grad_(), stack("running_mean"), stack("running_var"), True, 1e-5)
    # opcheck's gradient test compares against itself in the op's own precision: schema, fake tensors,
    # autograd registration and a compiled trace all see the extra argument.
    torch.library.opcheck(torch.ops.frsengine.mixed_op.default, (*args, 2, True, BF16))
