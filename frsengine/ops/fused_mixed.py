"""Fused mixed op of the default op set: out = a_0 x + sum_k a_k ReLU(BN_k(conv_k(x))), k in 3x3/5x5/7x7.

Exactly the reference ``MixedOp`` of ``frsengine.nas.ops`` with the default op set (skip, conv 3x3,
5x5, 7x7; each conv = ConvBR: no bias, BatchNorm2d, ReLU), ``a`` the softmax(alpha) row of the edge.

Declared once as ``frsengine::mixed_op`` (plus ``frsengine::mixed_op_backward``) with fake
implementations, so torch.compile/export trace through it. The op is functional: in training it
returns the batch mean and biased variance of every branch; the running-statistics update happens
once, in :func:`fused_mixed_op` / :func:`mixed_op_module_forward`, outside the op, so the backward
(which recomputes the convolutions from the saved input, or reads them from ``saved`` in keep mode,
instead of keeping ~9 activations) can never update them a second time.

``groups`` batches G branches that share the op (interleaved along the batch, index i*G + g), each
normalised with its own batch statistics — the supernet's batched cells (frsengine/nas/fused.py).

Layouts: ``bn_weight``, ``bn_bias`` and running statistics are (3, C), rows in kernel-size order;
returned statistics are (G, 3, C); ``alpha`` holds the 4 normalised weights in op-set order (skip,
3x3, 5x5, 7x7). ``out``, ``saved`` and grad x are laid out like ``x``: channels_last for an NHWC x
(:func:`memory_format_of`; the C++ CPU kernels then run on the NHWC tensors oneDNN convolves, with
no layout copies), contiguous otherwise.

Precision: ``conv_dtype`` runs the three convolutions in another dtype (bfloat16/float16) while
statistics, BatchNorm, ReLU and the alpha-weighted sum stay in x's dtype. The module wrappers take
it from ``torch.autocast`` (autocast's policy runs convolutions in its lower precision), so a
supernet under autocast gets lower-precision convolutions on the fused path too; inside the op
autocast is off (the op casts exactly what it means to).
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from frsengine.ops import dispatch
from frsengine.ops.conv_stack import KERNEL_SIZES, mixed_convs_backward, use_channels_last, use_stacked_conv

OP = "mixed_op"
DEFAULT_OP_NAMES = ("skip_connect", "conv_3x3", "conv_5x5", "conv_7x7")


# ---------------------------------------------------------------- implementations
# Every implementation sees the *tiled* layout: ``x`` is (G*n, C, H, W) with batch index i*G + g
# (branch g of sample i), so the same memory read as (n, G*C, H, W) has one channel per
# (group, channel) pair: per-group batch statistics are plain per-channel statistics of that view.
# BN parameters and statistics arrive tiled to (3, G*C); the custom op below tiles and un-tiles.
def grouped_view(t: Tensor, groups: int) -> Tensor:
    """(G*n, C, H, W) -> (n, G*C, H, W), a free view of a contiguous tensor."""
    n, c, h, w = t.shape
    return t.reshape(n // groups, groups * c, h, w)


def _conv(x, w, size, conv_dtype):
    """One candidate's convolution, in ``conv_dtype`` when given (result in x's dtype)."""
    if conv_dtype is None or conv_dtype == x.dtype:
        return F.conv2d(x, w, padding=size // 2)
    return F.conv2d(x.to(conv_dtype), w.to(conv_dtype), padding=size // 2).to(x.dtype)


def _reference_out(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps, groups,
                   conv_dtype=None):
    out = alpha[0] * x
    for k, (w, size) in enumerate(zip((w3, w5, w7), KERNEL_SIZES)):
        z = grouped_view(_conv(x, w, size, conv_dtype), groups)
        rm, rv = (None, None) if training else (running_mean[k], running_var[k])
        y = F.batch_norm(z, rm, rv, bn_weight[k], bn_bias[k], training=training, eps=eps)
        out = out + alpha[k + 1] * F.relu(y).reshape(x.shape)
    return out


def reference_forward(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps,
                      groups, keep, conv_dtype=None):
    out = _reference_out(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps,
                         groups, conv_dtype)
    with torch.no_grad():
        zs = [_conv(x, w, s, conv_dtype) for w, s in zip((w3, w5, w7), KERNEL_SIZES)] if training or keep else []
        saved = torch.stack(zs) if keep else x.new_empty(0)
        if not training:
            return out, running_mean.clone(), running_var.clone(), saved
        stats = [torch.var_mean(grouped_view(z, groups), dim=(0, 2, 3), unbiased=False) for z in zs]
    return out, torch.stack([m for _, m in stats]), torch.stack([v for v, _ in stats]), saved


def reference_backward(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, saved, training, eps,
                       groups, need_input_grad, need_weight_grad, conv_dtype=None):
    """The backward written out in plain PyTorch (the formulas every fused backward implements).

    Conv outputs are recomputed from x (``saved`` is ignored: the reference keeps nothing);
    mean/var are the statistics the forward used. With M = n*H*W per group, x_hat = (z - mean)
    * invstd, g_y = a_k * g * [y > 0]: grad gamma = sum g_y x_hat, grad beta = sum g_y, grad a_k =
    sum g * ReLU(y), grad a_skip = sum g x, grad z = gamma invstd (g_y - grad_beta / M - x_hat
    grad_gamma / M) in training (batch statistics depend on z), gamma invstd g_y in eval.
    """
    count = x.shape[0] // groups * x.shape[2] * x.shape[3]
    gv = grouped_view(grad_out, groups)
    g_gamma, g_beta, g_alpha, grads_z = [], [], [(grad_out * x).sum()], []
    for k, (w, size) in enumerate(zip((w3, w5, w7), KERNEL_SIZES)):
        z = grouped_view(_conv(x, w, size, conv_dtype), groups)
        invstd = torch.rsqrt(var[k] + eps)[None, :, None, None]
        x_hat = (z - mean[k][None, :, None, None]) * invstd
        y = x_hat * bn_weight[k][None, :, None, None] + bn_bias[k][None, :, None, None]
        g_y = alpha[k + 1] * gv * (y > 0)
        g_alpha.append((gv * F.relu(y)).sum())
        gb, gg = g_y.sum((0, 2, 3)), (g_y * x_hat).sum((0, 2, 3))
        scale = bn_weight[k][None, :, None, None] * invstd
        if training:
            g_z = scale * (g_y - gb[None, :, None, None] / count - x_hat * (gg / count)[None, :, None, None])
        else:
            g_z = scale * g_y
        g_gamma.append(gg)
        g_beta.append(gb)
        grads_z.append(g_z.reshape(x.shape))
    gx, gws = mixed_convs_backward(x, grads_z, w3, w5, w7, False, need_input_grad, need_weight_grad, conv_dtype)
    gx = gx + alpha[0] * grad_out if need_input_grad else x.new_empty(0)
    gws = gws if need_weight_grad else [w.new_empty(0) for w in (w3, w5, w7)]
    return (gx, *gws, torch.stack(g_gamma), torch.stack(g_beta), torch.stack(g_alpha))


# ---------------------------------------------------------------- native (C++ CPU / CUDA), Triton
def native_forward(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps,
                   groups, keep, conv_dtype=None):
    return torch.ops.frsengine_native.mixed_op_forward(
        x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps,
        use_stacked_conv(x.shape[1]), use_channels_last(x.device), groups, keep, conv_dtype)


def native_backward(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, saved, training, eps,
                    groups, need_input_grad, need_weight_grad, conv_dtype=None):
    return torch.ops.frsengine_native.mixed_op_backward(
        grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, saved, training, eps,
        use_stacked_conv(x.shape[1]), use_channels_last(x.device), groups, need_input_grad, need_weight_grad,
        conv_dtype)


def triton_forward(*args):
    from frsengine.kernels.mixed_op import mixed_op_forward
    return mixed_op_forward(*args)


def triton_backward(*args):
    from frsengine.kernels.mixed_op import mixed_op_backward
    return mixed_op_backward(*args)


dispatch.register(OP, "reference", reference_forward, reference_backward)
dispatch.register(OP, "cpp", native_forward, native_backward)
dispatch.register(OP, "cuda", native_forward, native_backward)
dispatch.register(OP, "triton", triton_forward, triton_backward)


# ---------------------------------------------------------------- the custom op
def _tile(t: Tensor, groups: int) -> Tensor:
    """(3, C) -> (3, G*C): column g*C + c holds t[:, c]."""
    return t if groups == 1 else torch.cat([t] * groups, dim=1)  # cat: a fifth of repeat's dispatch cost


def _untile(t: Tensor, groups: int) -> Tensor:
    """(3, G*C) statistics -> (G, 3, C)."""
    return t.reshape(t.shape[0], groups, -1).transpose(0, 1).contiguous()


def _no_autocast(x: Tensor):
    """Autocast off inside the op: it would otherwise recast the convolutions of the reference and
    the native kernels' inner ATen calls behind the op's back."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def autocast_conv_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs convolutions in on ``device_type`` now, or None when it is off."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def memory_format_of(x: Tensor) -> torch.memory_format:
    """``channels_last`` for an NHWC-strided x (the op's outputs then are too), else contiguous."""
    nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if nhwc else torch.contiguous_format


def _saved_like(x: Tensor, keep: bool) -> Tensor:
    """An empty ``saved`` of the layout the op returns: (3, N, C, H, W), each z_k laid out like x."""
    if not keep:
        return x.new_empty(0)
    if memory_format_of(x) == torch.channels_last:
        n, c, h, w = x.shape
        return x.new_empty((3, n, h, w, c)).permute(0, 1, 4, 2, 3)
    return x.new_empty((3, *x.shape))


def _check_groups(x: Tensor, groups: int) -> None:
    if groups < 1 or x.shape[0] % groups:
        raise ValueError(f"mixed_op: batch {x.shape[0]} is not a multiple of groups={groups}")


@torch.library.custom_op("frsengine::mixed_op", mutates_args=())
def mixed_op(x: Tensor, w3: Tensor, w5: Tensor, w7: Tensor, bn_weight: Tensor, bn_bias: Tensor,
             alpha: Tensor, running_mean: Tensor, running_var: Tensor, training: bool, eps: float,
             groups: int = 1, keep: bool = False, conv_dtype: Optional[torch.dtype] = None
             ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(out, mean (G, 3, C), biased var (G, 3, C), saved).

    ``x`` holds G groups interleaved along the batch (index i*G + g); each group is normalised with
    its own batch statistics (in eval all use the running ones). ``keep`` returns the conv outputs
    as ``saved`` ((3, N, C, H, W)) so the backward does not recompute them (more memory, less time);
    otherwise ``saved`` is empty. ``conv_dtype`` runs the convolutions in that dtype (module docstring).
    """
    return _forward(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps, groups, keep,
                    conv_dtype)


def _forward(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps, groups, keep,
             conv_dtype):
    _check_groups(x, groups)
    _, impl = dispatch.select(OP, x.device)
    with _no_autocast(x):
        out, mean, var, saved = impl.forward(x, w3, w5, w7, _tile(bn_weight, groups), _tile(bn_bias, groups),
                                             alpha, _tile(running_mean, groups), _tile(running_var, groups),
                                             training, eps, groups, keep, conv_dtype)
    fmt = memory_format_of(x)
    if fmt == torch.channels_last and keep and not _is_nhwc_saved(saved):   # backends that ran NCHW
        saved = _saved_like(x, True).copy_(saved)
    return out.contiguous(memory_format=fmt), _untile(mean, groups), _untile(var, groups), saved


def _is_nhwc_saved(saved: Tensor) -> bool:
    return saved.dim() == 5 and saved.permute(0, 1, 3, 4, 2).is_contiguous()


@mixed_op.register_fake
def _(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps, groups=1, keep=False,
      conv_dtype=None):
    stats = bn_weight.new_empty((groups, *bn_weight.shape))
    return torch.empty_like(x, memory_format=memory_format_of(x)), stats, torch.empty_like(stats), _saved_like(x, keep)


@torch.library.custom_op("frsengine::mixed_op_backward", mutates_args=())
def mixed_op_backward(grad_out: Tensor, x: Tensor, w3: Tensor, w5: Tensor, w7: Tensor, bn_weight: Tensor,
                      bn_bias: Tensor, alpha: Tensor, mean: Tensor, var: Tensor, saved: Tensor, training: bool,
                      eps: float, groups: int, need_input_grad: bool, need_weight_grad: bool,
                      conv_dtype: Optional[torch.dtype] = None
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Grads of x, w3, w5, w7, bn_weight, bn_bias, alpha (empty tensors where not needed)."""
    return _backward_impl(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, saved, training, eps, groups,
                          need_input_grad, need_weight_grad, conv_dtype)


def _backward_impl(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, saved, training, eps, groups,
                   need_input_grad, need_weight_grad, conv_dtype):
    _, impl = dispatch.select(OP, x.device)
    mean_t, var_t = (s.transpose(0, 1).reshape(3, -1).contiguous() for s in (mean, var))
    with _no_autocast(x):
        gx, g3, g5, g7, gg, gb, ga = impl.backward(grad_out, x, w3, w5, w7, _tile(bn_weight, groups),
                                                   _tile(bn_bias, groups), alpha, mean_t, var_t, saved, training,
                                                   eps, groups, need_input_grad, need_weight_grad, conv_dtype)
    c = bn_weight.shape[1]
    if need_input_grad:
        gx = gx.contiguous(memory_format=memory_format_of(x))
    return gx, g3, g5, g7, gg.reshape(3, groups, c).sum(1), gb.reshape(3, groups, c).sum(1), ga


@mixed_op_backward.register_fake
def _(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, saved, training, eps, groups,
      need_input_grad, need_weight_grad, conv_dtype=None):
    gx = torch.empty_like(x, memory_format=memory_format_of(x)) if need_input_grad else x.new_empty(0)
    gws = [torch.empty_like(w) if need_weight_grad else w.new_empty(0) for w in (w3, w5, w7)]
    return (gx, *gws, torch.empty_like(bn_weight), torch.empty_like(bn_bias), torch.empty_like(alpha))


def _setup_context(ctx, inputs, output):
    x, w3, w5, w7, bn_weight, bn_bias, alpha, _, _, training, eps, *rest = inputs
    _, mean, var, saved = output
    # The input, parameters, per-channel statistics and (keep mode only) the conv outputs.
    ctx.save_for_backward(x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, saved)
    ctx.training, ctx.eps = training, eps
    ctx.groups = rest[0] if rest else 1
    ctx.conv_dtype = rest[2] if len(rest) > 2 else None


def _input_grads(ctx, grad_out, backward_op):
    x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, saved = ctx.saved_tensors
    need = ctx.needs_input_grad
    need_x, need_w = need[0], any(need[1:4])
    g = grad_out.contiguous(memory_format=memory_format_of(x))
    gx, g3, g5, g7, gg, gb, ga = backward_op(g, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, saved, ctx.training,
                                             ctx.eps, ctx.groups, need_x, need_w, ctx.conv_dtype)
    return (gx if need_x else None, g3 if need_w else None, g5 if need_w else None, g7 if need_w else None,
            gg, gb, ga, None, None, None, None, None, None, None)


def _backward(ctx, grad_out, _grad_mean, _grad_var, _grad_saved):
    return _input_grads(ctx, grad_out, mixed_op_backward)


mixed_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerMixedOp(torch.autograd.Function):
    """``frsengine::mixed_op`` and its autograd without torch.library's Python dispatch layers: the
    same implementations, saved tensors and backward, for eager calls (see :func:`run_mixed_op`)."""

    # forward(ctx, ...), not a separate setup_context: apply() then skips binding the arguments
    # through inspect.signature, which alone cost ~0.1 ms per call.
    @staticmethod
    def forward(ctx, *inputs):
        output = _forward(*inputs)
        _setup_context(ctx, inputs, output)
        ctx.mark_non_differentiable(*output[1:])
        ctx.set_materialize_grads(False)
        return output

    @staticmethod
    def backward(ctx, grad_out, _grad_mean, _grad_var, _grad_saved):
        if grad_out is None:
            return (None,) * 14
        return _input_grads(ctx, grad_out, _backward_impl)


def run_mixed_op(x: Tensor, w3: Tensor, w5: Tensor, w7: Tensor, bn_weight: Tensor, bn_bias: Tensor, alpha: Tensor,
                 running_mean: Tensor, running_var: Tensor, training: bool, eps: float, groups: int = 1,
                 keep: bool = False, conv_dtype: Optional[torch.dtype] = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`mixed_op` as the supernet calls it: the declared custom op while torch.compile or
    export traces (they need its fake implementation), otherwise :class:`_EagerMixedOp`. The custom
    op's eager dispatch (argument binding, redispatch, its autograd wrapper) costs ~0.25 ms more per
    forward + backward (2-core CPU), ~85 ms of host time per fused FRSNet search step: the host
    time is what bounds that step on a GPU."""
    args = (x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps, groups, keep,
            conv_dtype)
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return mixed_op(*args)
    return _EagerMixedOp.apply(*args)


# ---------------------------------------------------------------- user-facing wrappers
def update_running_stats(running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor, count: int,
                         momentum: float | None, num_batches_tracked: Tensor | None = None) -> None:
    """nn.BatchNorm2d's update: unbiased variance, momentum or cumulative average (momentum=None)."""
    with torch.no_grad():
        if num_batches_tracked is not None:
            num_batches_tracked.add_(1)
        factor = momentum if momentum is not None else 1.0 / float(num_batches_tracked)
        running_mean.mul_(1.0 - factor).add_(mean, alpha=factor)
        running_var.mul_(1.0 - factor).add_(var * (count / max(count - 1, 1)), alpha=factor)


def fused_mixed_op(x: Tensor, weights: Tensor, w3: Tensor, w5: Tensor, w7: Tensor, bn_weight: Tensor,
                   bn_bias: Tensor, running_mean: Tensor, running_var: Tensor, training: bool,
                   momentum: float | None = 0.1, eps: float = 1e-5,
                   num_batches_tracked: Tensor | None = None, groups: int = 1, keep: bool = False) -> Tensor:
    """Functional fused mixed op; in training updates ``running_mean``/``running_var`` (3, C) in place,
    once per group in group order (as running the groups one after the other would). Under autocast
    the convolutions run in autocast's dtype (see the module docstring)."""
    out, mean, var, _ = run_mixed_op(x.to(w3.dtype), w3, w5, w7, bn_weight, bn_bias, weights, running_mean,
                                     running_var, training, eps, groups, keep, autocast_conv_dtype(x.device.type))
    if training:
        count = x.shape[0] // groups * x.shape[2] * x.shape[3]
        for g in range(groups):
            update_running_stats(running_mean, running_var, mean[g].detach(), var[g].detach(), count, momentum,
                                 num_batches_tracked)
    return out


def mixed_op_module_forward(module, x: Tensor, weights: Tensor, groups: int = 1, keep: bool = False,
                            repeat_updates: int = 1, update_stats: bool = True) -> Tensor:
    """Run a default-op-set ``frsengine.nas.ops.MixedOp`` through the fused op.

    Same results and running-statistics updates as ``module(x_g, weights)`` for each group g of
    ``x`` in turn (groups interleaved along the batch, see :func:`mixed_op`). ``repeat_updates``
    applies every update that many times: an edge whose input is shared by several branches runs
    once but updates its statistics as if it had run once per branch. Under autocast the input is
    taken in the parameters' dtype and only the convolutions run in autocast's dtype.
    ``update_stats=False`` leaves the running statistics alone (an activation-checkpoint recompute
    of a forward that already updated them).
    """
    if tuple(module.op_names) != DEFAULT_OP_NAMES:
        raise ValueError(f"the fused mixed op covers the op set {DEFAULT_OP_NAMES}, got {tuple(module.op_names)}")
    convs = [module.ops[i] for i in (1, 2, 3)]
    bns = [op.bn for op in convs]
    if any(bn is None or not op.relu for bn, op in zip(bns, convs)):
        raise ValueError("the fused mixed op needs Conv-BN-ReLU candidates")
    if len({(bn.momentum, bn.eps, bn.track_running_stats) for bn in bns}) != 1:
        raise ValueError("the three BatchNorms must share momentum, eps and track_running_stats")
    bn0 = bns[0]
    training = bn0.training or not bn0.track_running_stats
    bn_weight = torch.stack([bn.weight for bn in bns])
    bn_bias = torch.stack([bn.bias for bn in bns])
    if bn0.track_running_stats:
        rm = torch.stack([bn.running_mean for bn in bns])
        rv = torch.stack([bn.running_var for bn in bns])
    else:
        rm = rv = torch.zeros_like(bn_weight)
    ws = [op.conv.weight for op in convs]
    out, mean, var, _ = run_mixed_op(x.to(ws[0].dtype), *ws, bn_weight, bn_bias, weights.to(ws[0].dtype), rm,
                                     rv, training, bn0.eps, groups, keep, autocast_conv_dtype(x.device.type))
    if bn0.training and bn0.track_running_stats and update_stats:
        _update_bn_stats(bns, mean.detach(), var.detach(), x.shape[0] // groups * x.shape[2] * x.shape[3],
                         repeat_updates)
    return out


def _update_bn_stats(bns, mean: Tensor, var: Tensor, count: int, repeat: int) -> None:
    """:func:`update_running_stats` of every BN k with ``mean[g, k]``, ``var[g, k]``, group by group,
    ``repeat`` times each: with a momentum, as two foreach calls per update (the same arithmetic in
    the same order: bit-identical, a few dispatches instead of five per BN)."""
    momentum = bns[0].momentum
    # A cumulative average (the factor changes with every update) or BNs of different momenta: one by one.
    if momentum is None or any(bn.momentum != momentum for bn in bns):
        for g in range(mean.shape[0]):
            for _ in range(repeat):
                for k, bn in enumerate(bns):
                    update_running_stats(bn.running_mean, bn.running_var, mean[g, k], var[g, k], count,
                                         bn.momentum, bn.num_batches_tracked)
        return
    with torch.no_grad():
        running = [bn.running_mean for bn in bns] + [bn.running_var for bn in bns]
        unbiased = var * (count / max(count - 1, 1))
        for g in range(mean.shape[0]):
            batch = [*mean[g].unbind(0), *unbiased[g].unbind(0)]
            for _ in range(repeat):
                torch._foreach_mul_(running, 1.0 - momentum)
                torch._foreach_add_(running, batch, alpha=momentum)
        torch._foreach_add_([bn.num_batches_tracked for bn in bns], mean.shape[0] * repeat)
