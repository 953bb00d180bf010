"""Beta-weighted multi-scale aggregation: out = sum_i beta_i * resize(x_i, (H, W)).

``resize`` is bilinear with align_corners=True (the authors' choice; identity when the size already
matches). Up to three inputs of one node (shared N and C, any spatial sizes) are read once and the
output is written once; the backward reads the output gradient once, scattering into the input
gradients and reducing the beta gradients in the same pass.

Declared as ``frsengine::beta_aggregate`` / ``frsengine::beta_aggregate_backward``; the backward
returns a list: the input gradients (when requested) followed by the gradient of ``beta``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from frsengine.ops import dispatch

OP = "beta_aggregate"
MAX_INPUTS = 3


def _resize(x: Tensor, out_h: int, out_w: int) -> Tensor:
    if tuple(x.shape[-2:]) == (out_h, out_w):
        return x
    return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=True)


def _reference_out(inputs, beta, out_h, out_w):
    out = beta[0] * _resize(inputs[0], out_h, out_w)
    for i in range(1, len(inputs)):
        out = out + beta[i] * _resize(inputs[i], out_h, out_w)
    return out


def reference_forward(inputs, beta, out_h, out_w):
    out = _reference_out(inputs, beta, out_h, out_w)
    # A custom op must not return an alias of its input (one input, beta = 1 never aliases: beta*x
    # is a new tensor, but keep the guarantee explicit).
    return out if all(out.data_ptr() != x.data_ptr() for x in inputs) else out.clone()


def reference_backward(grad_out, inputs, beta, need_input_grad):
    """Plain PyTorch: grad x_i = beta_i * resize^T(grad), grad beta_i = sum grad * resize(x_i)."""
    out_h, out_w = grad_out.shape[-2:]
    g_beta = torch.stack([(grad_out * _resize(x, out_h, out_w)).sum() for x in inputs])
    if not need_input_grad:
        return [g_beta]
    grads = []
    for x, b in zip(inputs, beta):
        g = b * grad_out
        if tuple(x.shape[-2:]) != (out_h, out_w):
            g = torch.ops.aten.upsample_bilinear2d_backward(g, [out_h, out_w], list(x.shape), True)
        grads.append(g)
    return grads + [g_beta]


def native_forward(inputs, beta, out_h, out_w):
    return torch.ops.frsengine_native.beta_aggregate_forward(inputs, beta, out_h, out_w)


def native_backward(grad_out, inputs, beta, need_input_grad):
    return torch.ops.frsengine_native.beta_aggregate_backward(grad_out, inputs, beta, need_input_grad)


def triton_forward(*args):
    from frsengine.kernels.beta_aggregate import beta_aggregate_forward
    return beta_aggregate_forward(*args)


def triton_backward(*args):
    from frsengine.kernels.beta_aggregate import beta_aggregate_backward
    return beta_aggregate_backward(*args)


dispatch.register(OP, "reference", reference_forward, reference_backward)
dispatch.register(OP, "cpp", native_forward, native_backward)
dispatch.register(OP, "cuda", native_forward, native_backward)
dispatch.register(OP, "triton", triton_forward, triton_backward)


def _check(inputs: Sequence[Tensor], beta: Tensor) -> None:
    if not 1 <= len(inputs) <= MAX_INPUTS:
        raise ValueError(f"beta_aggregate takes 1..{MAX_INPUTS} inputs, got {len(inputs)}")
    if beta.shape != (len(inputs),):
        raise ValueError(f"beta must have shape ({len(inputs)},), got {tuple(beta.shape)}")
    n, c = inputs[0].shape[:2]
    for x in inputs:
        if x.dim() != 4 or x.shape[:2] != (n, c):
            raise ValueError(f"inputs must be (N, C, H, W) with shared N, C; got {[tuple(t.shape) for t in inputs]}")


@torch.library.custom_op("frsengine::beta_aggregate", mutates_args=())
def beta_aggregate(inputs: list[Tensor], beta: Tensor, out_h: int, out_w: int) -> Tensor:
    """sum_i beta[i] * bilinear_align_corners(inputs[i], (out_h, out_w))."""
    _check(inputs, beta)
    _, impl = dispatch.select(OP, inputs[0].device)
    return impl.forward(list(inputs), beta, out_h, out_w)


@beta_aggregate.register_fake
def _(inputs, beta, out_h, out_w):
    x = inputs[0]
    return x.new_empty((x.shape[0], x.shape[1], out_h, out_w))


@torch.library.custom_op("frsengine::beta_aggregate_backward", mutates_args=())
def beta_aggregate_backward(grad_out: Tensor, inputs: list[Tensor], beta: Tensor,
                            need_input_grad: bool) -> list[Tensor]:
    """[grad inputs..., (only when need_input_grad)] + [grad beta]."""
    _, impl = dispatch.select(OP, grad_out.device)
    return list(impl.backward(grad_out, list(inputs), beta, need_input_grad))


@beta_aggregate_backward.register_fake
def _(grad_out, inputs, beta, need_input_grad):
    grads = [torch.empty_like(x) for x in inputs] if need_input_grad else []
    return grads + [torch.empty_like(beta)]


def _setup_context(ctx, inputs, output):
    xs, beta, _, _ = inputs
    ctx.save_for_backward(*xs, beta)
    ctx.num_inputs = len(xs)


def _backward(ctx, grad_out):
    *xs, beta = ctx.saved_tensors
    need_x = any(ctx.needs_input_grad[0]) if isinstance(ctx.needs_input_grad[0], (list, tuple)) \
        else bool(ctx.needs_input_grad[0])
    grads = beta_aggregate_backward(grad_out.contiguous(), xs, beta, need_x)
    gx = grads[:-1] if need_x else [None] * len(xs)
    return gx, grads[-1], None, None


beta_aggregate.register_autograd(_backward, setup_context=_setup_context)


def aggregate(inputs: Sequence[Tensor], beta: Tensor | Sequence[Tensor], size: Sequence[int]) -> Tensor:
    """User-facing form: ``beta`` may be a (K,) tensor or K scalar tensors (e.g. slices of the beta grid)."""
    if not isinstance(beta, Tensor):
        beta = torch.stack([torch.as_tensor(b) for b in beta])
    return beta_aggregate(list(inputs), beta, int(size[0]), int(size[1]))
