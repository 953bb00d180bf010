"""Fused mixed op vs the plain MixedOp oracle, per implementation.

Tolerances (float32, max-norm relative to the oracle's largest entry): forward 1e-5, every
gradient 1e-4 (the BN input gradient subtracts two sums over N*H*W elements, accumulated in a
different order), running statistics 1e-5. float64 gradcheck: torch defaults (atol 1e-5, rtol 1e-3).
"""
from __future__ import annotations

import pytest
import torch

from frsengine.ops import dispatch
from frsengine.ops.fused_mixed import _update_bn_stats, mixed_op, mixed_op_module_forward, run_mixed_op, \
    update_running_stats
from opcases import assert_close, oracle_pair, random_mixed_op, sample_shapes

BACKENDS = ["reference", "cpp", "triton"]
SHAPES = sample_shapes(5, seed=4)          # the CPU implementations
SMALL_SHAPES = sample_shapes(3, seed=5, channels=(4, 8), sizes=(8, 12), batch=(1, 2))  # Triton interpreter
FWD_RTOL, GRAD_RTOL, STATS_RTOL = 1e-5, 1e-4, 1e-5
LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def _assert_layout(t, layout, what):
    """The op's outputs are laid out like its input (the C++ CPU kernels run NHWC on an NHWC x)."""
    assert t.is_contiguous(memory_format=LAYOUTS[layout]), f"{what}: strides {t.stride()} are not {layout}"


def _shapes(backend):
    return SMALL_SHAPES if backend == "triton" else SHAPES


def _compare_with_oracle(shape, training, conv_mode, monkeypatch, layout="nchw", keep=False):
    n, c, h, w = shape
    monkeypatch.setenv("FRSENGINE_MIXED_CONV", conv_mode)
    oracle, fused = oracle_pair(c, training)
    x = torch.randn(n, c, h, w).contiguous(memory_format=LAYOUTS[layout]).requires_grad_()
    a = torch.softmax(torch.randn(4), 0).requires_grad_()
    want = oracle(x, a)
    got = mixed_op_module_forward(fused, x, a, keep=keep)
    _assert_layout(got, layout, f"forward {shape}")
    assert_close(got, want, FWD_RTOL, f"forward {shape}")
    g = torch.randn_like(want)
    wants = torch.autograd.grad(want, [x, a, *oracle.parameters()], g)
    gots = torch.autograd.grad(got, [x, a, *fused.parameters()], g)
    names = ["x", "alpha"] + [name for name, _ in oracle.named_parameters()]
    for name, gw, gg in zip(names, wants, gots):
        assert_close(gg, gw, GRAD_RTOL, f"grad {name} {shape}")
    for (name, bw), bg in zip(oracle.named_buffers(), fused.buffers()):
        if bw.dtype == torch.long:
            assert torch.equal(bg, bw), f"{name}: {bg} != {bw}"
        else:
            assert_close(bg, bw, STATS_RTOL, f"{name} {shape}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_matches_oracle(backend, training, layout, use_backend, monkeypatch):
    use_backend(backend)
    for i, shape in enumerate(_shapes(backend)):
        # Alternate the convolution strategy so both are covered at every width (on an NHWC x the
        # C++ kernels run NHWC with separate convolutions, NCHW with the stacked one).
        _compare_with_oracle(shape, training, "stacked" if i % 2 == 0 else "separate", monkeypatch, layout)


# Few channels and an even width: the C++ CPU kernels convolve width-paired (csrc/paired_conv.cpp)
# where FRSENGINE_CONV_PAIRING allows; C=16 pairs only when forced; an odd width never pairs.
PAIRING_SHAPES = [(2, 8, 12, 16), (3, 4, 9, 10), (1, 6, 16, 8), (2, 16, 8, 12), (2, 8, 8, 7)]


@pytest.mark.parametrize("pairing", ["auto", "on", "off"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("keep", [False, True], ids=["recompute", "keep"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_width_paired_convolutions_match_oracle(pairing, training, keep, layout, use_backend, monkeypatch):
    use_backend("cpp")
    monkeypatch.setenv("FRSENGINE_CONV_PAIRING", pairing)
    for shape in PAIRING_SHAPES:
        _compare_with_oracle(shape, training, "separate", monkeypatch, layout, keep=keep)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_width_paired_gradcheck_float64(training, use_backend, single_thread, monkeypatch):
    use_backend("cpp")
    monkeypatch.setenv("FRSENGINE_CONV_PAIRING", "on")
    args = _op_args(torch.float64, training, n=2, c=2, h=5, w=6, layout="nhwc")
    fn = lambda *t: run_mixed_op(*t, *args[7:])[0]
    assert torch.autograd.gradcheck(fn, args[:7], eps=1e-6, atol=1e-5, rtol=1e-3)


def test_bad_pairing_setting_is_a_clear_error(use_backend, monkeypatch):
    use_backend("cpp")
    monkeypatch.setenv("FRSENGINE_CONV_PAIRING", "maybe")
    args = _op_args(torch.float32, True, n=2, c=4, h=6, w=6, layout="nhwc")
    with pytest.raises(RuntimeError, match="FRSENGINE_CONV_PAIRING=maybe must be 'auto', 'on' or 'off'"):
        run_mixed_op(*args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_momentum_none_cumulative_average(backend, use_backend):
    use_backend(backend)
    oracle, fused = oracle_pair(6, True)
    for m in (oracle, fused):
        for op in m.ops[1:]:
            op.bn.momentum = None
    for _ in range(2):
        x = torch.randn(2, 6, 9, 10)
        a = torch.softmax(torch.randn(4), 0)
        oracle(x, a)
        mixed_op_module_forward(fused, x, a)
    for (name, bw), bg in zip(oracle.named_buffers(), fused.buffers()):
        assert_close(bg.double(), bw.double(), STATS_RTOL, name)


def _grouped_case(groups, n, c, h, w, training, keep, layout="nchw"):
    """The fused op on G groups interleaved along the batch vs the oracle run on each group in turn."""
    oracle, fused = oracle_pair(c, training)
    xs = [torch.randn(n, c, h, w) for _ in range(groups)]
    a = torch.softmax(torch.randn(4), 0)
    a_o, a_f = a.clone().requires_grad_(), a.clone().requires_grad_()
    xs_o = [x.clone().requires_grad_() for x in xs]
    x_f = torch.stack(xs, 1).reshape(n * groups, c, h, w)   # index i*G + g
    x_f = x_f.contiguous(memory_format=LAYOUTS[layout]).requires_grad_()
    want = torch.stack([oracle(x, a_o) for x in xs_o], 1).reshape(n * groups, c, h, w)
    got = mixed_op_module_forward(fused, x_f, a_f, groups=groups, keep=keep)
    tag = f"G={groups} {(n, c, h, w)} {'train' if training else 'eval'} keep={keep} {layout}"
    _assert_layout(got, layout, f"forward {tag}")
    assert_close(got, want, FWD_RTOL, f"forward {tag}")
    g = torch.randn_like(want)
    wants = torch.autograd.grad(want, [*xs_o, a_o, *oracle.parameters()], g)
    gots = torch.autograd.grad(got, [x_f, a_f, *fused.parameters()], g)
    assert_close(gots[0], torch.stack(wants[:groups], 1).reshape(x_f.shape), GRAD_RTOL, f"grad x {tag}")
    names = ["alpha"] + [name for name, _ in oracle.named_parameters()]
    for name, gw, gg in zip(names, wants[groups:], gots[1:]):
        assert_close(gg, gw, GRAD_RTOL, f"grad {name} {tag}")
    for (name, bw), bg in zip(oracle.named_buffers(), fused.buffers()):
        if bw.dtype == torch.long:
            assert torch.equal(bg, bw), f"{name}: {bg} != {bw} ({tag})"
        else:
            assert_close(bg, bw, STATS_RTOL, f"{name} {tag}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_grouped_batch_matches_oracle_per_group(backend, training, layout, use_backend):
    """Batched branches: per-group BN statistics and updates equal running the groups one by one."""
    use_backend(backend)
    for i, (n, c, h, w) in enumerate(_shapes(backend)[:3]):
        _grouped_case(2 + i % 2, n, c, h, w, training, keep=i % 2 == 0, layout=layout)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_keep_mode_matches_recompute(backend, layout, use_backend):
    use_backend(backend)
    n, c, h, w = _shapes(backend)[0]
    _grouped_case(1, n, c, h, w, True, keep=True, layout=layout)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_backward_does_not_touch_running_stats(backend, use_backend):
    use_backend(backend)
    m = random_mixed_op(5, True)
    x = torch.randn(2, 5, 8, 8, requires_grad=True)
    out = mixed_op_module_forward(m, x, torch.softmax(torch.randn(4), 0))
    after_forward = [b.clone() for b in m.buffers()]
    out.square().sum().backward()
    assert all(torch.equal(b, s) for b, s in zip(m.buffers(), after_forward))


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_saves_only_input_parameters_and_statistics(backend, use_backend):
    """The recompute backward keeps x, the weights and (3, C) stats: far below 9 activations."""
    use_backend(backend)
    n, c, h, w = 2, 8, 32, 32
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    m = random_mixed_op(c, True)
    x = torch.randn(n, c, h, w, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mixed_op_module_forward(m, x, torch.softmax(torch.randn(4), 0).requires_grad_())
    weights = sum(p.numel() for p in m.parameters())
    assert sum(saved) <= x.numel() + 2 * weights + 64 * c, saved
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        m(x, torch.softmax(torch.randn(4), 0).requires_grad_())
    assert sum(saved) > 6 * x.numel()  # the plain path really keeps the activations
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mixed_op_module_forward(m, x, torch.softmax(torch.randn(4), 0).requires_grad_(), keep=True)
    # keep mode: x plus the three conv outputs, still well below the plain path.
    assert 4 * x.numel() <= sum(saved) <= 4 * x.numel() + 2 * weights + 64 * c, saved


def _op_args(dtype, training, n=2, c=3, h=5, w=6, layout="nchw"):
    m = random_mixed_op(c, training, dtype)
    convs = m.ops[1:]
    stack = lambda attr: torch.stack([getattr(op.bn, attr) for op in convs]).detach()
    return (torch.randn(n, c, h, w, dtype=dtype).contiguous(memory_format=LAYOUTS[layout]).requires_grad_(),
            *(op.conv.weight.detach().clone().requires_grad_() for op in convs),
            stack("weight").requires_grad_(), stack("bias").requires_grad_(),
            torch.softmax(torch.randn(4, dtype=dtype), 0).requires_grad_(),
            stack("running_mean"), stack("running_var"), training, 1e-5)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("conv_mode", ["stacked", "separate"])
@pytest.mark.parametrize("entry", [mixed_op, run_mixed_op], ids=["custom_op", "eager"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_gradcheck_float64(backend, training, conv_mode, entry, layout, use_backend, single_thread, monkeypatch):
    use_backend(backend)
    monkeypatch.setenv("FRSENGINE_MIXED_CONV", conv_mode)
    args = _op_args(torch.float64, training, n=2, c=2, h=5, w=4, layout=layout)
    fn = lambda *t: entry(*t, *args[7:])[0]
    assert torch.autograd.gradcheck(fn, args[:7], eps=1e-6, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("keep", [False, True], ids=["recompute", "keep"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_eager_entry_equals_the_custom_op(backend, keep, layout, use_backend):
    """run_mixed_op (autograd.Function, used in eager mode) and the declared custom op run the same
    implementations: outputs, statistics and every gradient are bit-identical."""
    use_backend(backend)
    args = _op_args(torch.float32, True, n=4, layout=layout)
    results = []
    for entry in (mixed_op, run_mixed_op):
        out, mean, var, saved = entry(*args, 2, keep)
        g = torch.linspace(-1, 1, out.numel()).view_as(out)
        results.append((out, mean, var, saved, *torch.autograd.grad(out, args[:7], g)))
    assert not (mean.requires_grad or var.requires_grad or saved.requires_grad)  # eager: marked non-differentiable
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("momentum", [0.1, None, (0.1, 0.2, None)], ids=["momentum", "cumulative", "mixed"])
def test_batched_stat_update_is_bit_identical(momentum):
    """_update_bn_stats (foreach calls) == update_running_stats per group, repeat and BN, in order
    (each BN with its own momentum)."""
    torch.manual_seed(0)
    momenta = momentum if isinstance(momentum, tuple) else (momentum,) * 3
    bns_a = [torch.nn.BatchNorm2d(5, momentum=m) for m in momenta]
    bns_b = [torch.nn.BatchNorm2d(5, momentum=m) for m in momenta]
    for a, b in zip(bns_a, bns_b):
        a.running_mean.uniform_(-1, 1), a.running_var.uniform_(0.5, 2), a.num_batches_tracked.fill_(3)
        b.load_state_dict(a.state_dict())
    mean, var = torch.randn(2, 3, 5), torch.rand(2, 3, 5)
    _update_bn_stats(bns_a, mean, var, count=37, repeat=3)
    for g in range(2):
        for _ in range(3):
            for k, bn in enumerate(bns_b):
                update_running_stats(bn.running_mean, bn.running_var, mean[g, k], var[g, k], 37, bn.momentum,
                                     bn.num_batches_tracked)
    for a, b in zip(bns_a, bns_b):
        for name, t in a.state_dict().items():
            assert torch.equal(t, b.state_dict()[name]), name
    assert int(bns_a[0].num_batches_tracked) == 3 + 6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_opcheck(backend, training, layout, use_backend, single_thread):
    use_backend(backend)
    args = _op_args(torch.float32, training, layout=layout)
    torch.library.opcheck(torch.ops.frsengine.mixed_op.default, args)
    out, mean, var, saved = mixed_op(*args)
    g = torch.randn_like(out)
    detached = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    torch.library.opcheck(torch.ops.frsengine.mixed_op_backward.default,
                          (g, *detached[:7], mean, var, saved, training, 1e-5, 1, True, False),
                          test_utils=("test_schema", "test_faketensor"))
    # Grouped batch (2 groups of 2), conv outputs kept.
    args = _op_args(torch.float32, training, n=4, layout=layout)
    torch.library.opcheck(torch.ops.frsengine.mixed_op.default, (*args, 2, True))


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_weight_grads_skipped_when_not_needed(backend, use_backend, monkeypatch):
    """The architecture step asks only for alpha grads: the backward is told to skip kernel grads."""
    use_backend(backend)
    impl = dispatch._REGISTRY["mixed_op"][backend]
    calls = []

    def spy(*a):
        calls.append(a[-3:-1])  # (need_input_grad, need_weight_grad), before conv_dtype
        return impl.backward(*a)

    monkeypatch.setitem(dispatch._REGISTRY["mixed_op"], backend, dispatch.Implementation(impl.forward, spy))
    args = [a.detach() if isinstance(a, torch.Tensor) else a for a in _op_args(torch.float32, True)]
    args[0].requires_grad_()
    args[6].requires_grad_()
    out = mixed_op(*args)[0]
    gx, ga = torch.autograd.grad(out.sum(), [args[0], args[6]])
    assert calls == [(True, False)]
    assert gx.shape == args[0].shape and ga.shape == (4,)


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_torch_compile_traces_the_op(backend, layout, use_backend):
    """fullgraph=True: the op (fake impl) and the running-statistics update trace without breaks."""
    use_backend(backend)
    oracle, fused = oracle_pair(4, True)
    compiled = torch.compile(lambda t, a: mixed_op_module_forward(fused, t, a), backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=LAYOUTS[layout]).requires_grad_()
    a = torch.softmax(torch.randn(4), 0)
    got, want = compiled(x, a), oracle(x, a)
    assert_close(got, want, FWD_RTOL, "compiled forward")
    assert_close(torch.autograd.grad(got.sum(), x)[0], torch.autograd.grad(want.sum(), x)[0], GRAD_RTOL, "grad x")
    for bw, bg in zip(oracle.buffers(), fused.buffers()):
        assert_close(bg.double(), bw.double(), STATS_RTOL, "running stats")
