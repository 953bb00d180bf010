"""Fused mixed op of the default op set: out = a_0 x + sum_k a_k ReLU(BN_k(conv_k(x))), k in 3x3/5x5/7x7.

Exactly the reference ``MixedOp`` of ``frsengine.nas.ops`` with the default op set (skip, conv 3x3,
5x5, 7x7; each conv = ConvBR: no bias, BatchNorm2d, ReLU), ``a`` the softmax(alpha) row of the edge.

Declared once as ``frsengine::mixed_op`` (plus ``frsengine::mixed_op_backward``) with fake
implementations, so torch.compile/export trace through it. The op is functional: in training it
returns the batch mean and biased variance of every branch; the running-statistics update happens
once, in :func:`fused_mixed_op`, outside the op, so the backward (which recomputes the convolutions
from the saved input instead of keeping ~9 activations) can never update them a second time.

Layouts: ``bn_weight``, ``bn_bias``, running and returned statistics are (3, C), rows in kernel-size
order; ``alpha`` holds the 4 normalised weights in op-set order (skip, 3x3, 5x5, 7x7).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from frsengine.ops import dispatch
from frsengine.ops.conv_stack import KERNEL_SIZES, mixed_convs_backward, use_stacked_conv

OP = "mixed_op"
DEFAULT_OP_NAMES = ("skip_connect", "conv_3x3", "conv_5x5", "conv_7x7")


# ---------------------------------------------------------------- reference (the oracle's twin)
def _reference_out(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps):
    out = alpha[0] * x
    for k, (w, size) in enumerate(zip((w3, w5, w7), KERNEL_SIZES)):
        z = F.conv2d(x, w, padding=size // 2)
        rm, rv = (None, None) if training else (running_mean[k], running_var[k])
        y = F.batch_norm(z, rm, rv, bn_weight[k], bn_bias[k], training=training, eps=eps)
        out = out + alpha[k + 1] * F.relu(y)
    return out


def reference_forward(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps):
    out = _reference_out(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps)
    if not training:
        return out, running_mean.clone(), running_var.clone()
    with torch.no_grad():
        stats = [torch.var_mean(F.conv2d(x, w, padding=s // 2), dim=(0, 2, 3), unbiased=False)
                 for w, s in zip((w3, w5, w7), KERNEL_SIZES)]
    return out, torch.stack([m for _, m in stats]), torch.stack([v for v, _ in stats])


def reference_backward(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, training, eps,
                       need_input_grad, need_weight_grad):
    """The backward written out in plain PyTorch (the formulas every fused backward implements).

    Conv outputs are recomputed from x; mean/var are the statistics the forward used.
    With M = N*H*W, x_hat = (z - mean) * invstd, g_y = a_k * g * [y > 0]:
    grad gamma = sum g_y x_hat, grad beta = sum g_y, grad a_k = sum g * ReLU(y), grad a_skip = sum g x,
    grad z = gamma invstd (g_y - grad_beta / M - x_hat grad_gamma / M) in training (batch statistics
    depend on z), gamma invstd g_y in eval.
    """
    count = x.shape[0] * x.shape[2] * x.shape[3]
    g_gamma, g_beta, g_alpha, grads_z = [], [], [(grad_out * x).sum()], []
    for k, (w, size) in enumerate(zip((w3, w5, w7), KERNEL_SIZES)):
        z = F.conv2d(x, w, padding=size // 2)
        invstd = torch.rsqrt(var[k] + eps)[None, :, None, None]
        x_hat = (z - mean[k][None, :, None, None]) * invstd
        y = x_hat * bn_weight[k][None, :, None, None] + bn_bias[k][None, :, None, None]
        g_y = alpha[k + 1] * grad_out * (y > 0)
        g_alpha.append((grad_out * F.relu(y)).sum())
        gb, gg = g_y.sum((0, 2, 3)), (g_y * x_hat).sum((0, 2, 3))
        scale = bn_weight[k][None, :, None, None] * invstd
        if training:
            g_z = scale * (g_y - gb[None, :, None, None] / count - x_hat * (gg / count)[None, :, None, None])
        else:
            g_z = scale * g_y
        g_gamma.append(gg)
        g_beta.append(gb)
        grads_z.append(g_z)
    gx, gws = mixed_convs_backward(x, grads_z, w3, w5, w7, False, need_input_grad, need_weight_grad)
    gx = gx + alpha[0] * grad_out if need_input_grad else x.new_empty(0)
    gws = gws if need_weight_grad else [w.new_empty(0) for w in (w3, w5, w7)]
    return (gx, *gws, torch.stack(g_gamma), torch.stack(g_beta), torch.stack(g_alpha))


# ---------------------------------------------------------------- native (C++ CPU / CUDA), Triton
def native_forward(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps):
    return torch.ops.frsengine_native.mixed_op_forward(
        x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps,
        use_stacked_conv(x.shape[1]))


def native_backward(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, training, eps,
                    need_input_grad, need_weight_grad):
    return torch.ops.frsengine_native.mixed_op_backward(
        grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, training, eps,
        use_stacked_conv(x.shape[1]), need_input_grad, need_weight_grad)


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
@torch.library.custom_op("frsengine::mixed_op", mutates_args=())
def mixed_op(x: Tensor, w3: Tensor, w5: Tensor, w7: Tensor, bn_weight: Tensor, bn_bias: Tensor,
             alpha: Tensor, running_mean: Tensor, running_var: Tensor, training: bool,
             eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(out, mean (3, C), biased var (3, C)); in eval the statistics used are the running ones."""
    _, impl = dispatch.select(OP, x.device)
    return tuple(impl.forward(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var,
                              training, eps))


@mixed_op.register_fake
def _(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps):
    return torch.empty_like(x), bn_weight.new_empty(bn_weight.shape), bn_weight.new_empty(bn_weight.shape)


@torch.library.custom_op("frsengine::mixed_op_backward", mutates_args=())
def mixed_op_backward(grad_out: Tensor, x: Tensor, w3: Tensor, w5: Tensor, w7: Tensor, bn_weight: Tensor,
                      bn_bias: Tensor, alpha: Tensor, mean: Tensor, var: Tensor, training: bool, eps: float,
                      need_input_grad: bool, need_weight_grad: bool
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Grads of x, w3, w5, w7, bn_weight, bn_bias, alpha (empty tensors where not needed)."""
    _, impl = dispatch.select(OP, x.device)
    return tuple(impl.backward(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, training,
                               eps, need_input_grad, need_weight_grad))


@mixed_op_backward.register_fake
def _(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, training, eps, need_input_grad,
      need_weight_grad):
    gx = torch.empty_like(x) if need_input_grad else x.new_empty(0)
    gws = [torch.empty_like(w) if need_weight_grad else w.new_empty(0) for w in (w3, w5, w7)]
    return (gx, *gws, torch.empty_like(bn_weight), torch.empty_like(bn_bias), torch.empty_like(alpha))


def _setup_context(ctx, inputs, output):
    x, w3, w5, w7, bn_weight, bn_bias, alpha, _, _, training, eps = inputs
    _, mean, var = output
    # Only the input, parameters and per-channel statistics are kept: backward recomputes the convs.
    ctx.save_for_backward(x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var)
    ctx.training, ctx.eps = training, eps


def _backward(ctx, grad_out, _grad_mean, _grad_var):
    x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var = ctx.saved_tensors
    need = ctx.needs_input_grad
    need_x, need_w = need[0], any(need[1:4])
    gx, g3, g5, g7, gg, gb, ga = mixed_op_backward(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean,
                                                   var, ctx.training, ctx.eps, need_x, need_w)
    return (gx if need_x else None, g3 if need_w else None, g5 if need_w else None, g7 if need_w else None,
            gg, gb, ga, None, None, None, None)


mixed_op.register_autograd(_backward, setup_context=_setup_context)


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
                   num_batches_tracked: Tensor | None = None) -> Tensor:
    """Functional fused mixed op; in training updates ``running_mean``/``running_var`` (3, C) in place."""
    out, mean, var = mixed_op(x, w3, w5, w7, bn_weight, bn_bias, weights, running_mean, running_var,
                              training, eps)
    if training:
        update_running_stats(running_mean, running_var, mean.detach(), var.detach(),
                             x.shape[0] * x.shape[2] * x.shape[3], momentum, num_batches_tracked)
    return out


def mixed_op_module_forward(module, x: Tensor, weights: Tensor) -> Tensor:
    """Run a default-op-set ``frsengine.nas.ops.MixedOp`` through the fused op (same results, same
    running-statistics updates as ``module(x, weights)``)."""
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
    out, mean, var = mixed_op(x, *(op.conv.weight for op in convs), bn_weight, bn_bias, weights, rm, rv,
                              training, bn0.eps)
    if bn0.training and bn0.track_running_stats:
        count = x.shape[0] * x.shape[2] * x.shape[3]
        for k, bn in enumerate(bns):
            update_running_stats(bn.running_mean, bn.running_var, mean[k].detach(), var[k].detach(), count,
                                 bn.momentum, bn.num_batches_tracked)
    return out
