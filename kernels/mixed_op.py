"""Triton epilogue kernels of the fused mixed op and the host functions that run them.

The convolutions stay with torch (cuDNN / oneDNN, see frsengine/ops/conv_stack.py); Triton does the
memory-bound rest, each kernel one pass over its planes:
  _channel_stats      per-channel mean and biased variance of one branch (training forward),
  _forward_epilogue   out = a_0 x + sum_k a_k ReLU(z_k * scale_k + shift_k) for all three branches,
  _backward_reduce    per channel: sum g_y, sum g_y x_hat, sum g ReLU(y) (and sum g x once),
  _backward_grad_z    grad z_k for all three branches.
The host functions follow the contract of ``frsengine.ops.fused_mixed`` (same arguments, same
outputs); autograd is registered once on the custom op, for every implementation.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from frsengine.ops.conv_stack import mixed_convs, mixed_convs_backward, use_stacked_conv
from frsengine.ops.fused_mixed import grouped_view

BLOCK = 1024


@triton.jit
def _channel_stats(z_ptr, mean_ptr, var_ptr, N, C, HW, batch_stride, BLOCK: tl.constexpr):
    c = tl.program_id(0)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for n in range(0, N):
        base = z_ptr + n * batch_stride + c * HW
        for start in range(0, HW, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            acc += tl.load(base + offs, mask=offs < HW, other=0.0).to(tl.float32)
    count = (N * HW).to(tl.float32)
    mean = tl.sum(acc, axis=0) / count
    # Second pass around the mean: no cancellation from E[z^2] - E[z]^2.
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for n in range(0, N):
        base = z_ptr + n * batch_stride + c * HW
        for start in range(0, HW, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < HW
            d = tl.where(mask, tl.load(base + offs, mask=mask, other=0.0).to(tl.float32) - mean, 0.0)
            acc += d * d
    tl.store(mean_ptr + c, mean)
    tl.store(var_ptr + c, tl.sum(acc, axis=0) / count)


@triton.jit
def _forward_epilogue(x_ptr, z0_ptr, z1_ptr, z2_ptr, scale_ptr, shift_ptr, alpha_ptr, out_ptr, C, HW,
                      z_batch_stride, BLOCK: tl.constexpr):
    nc = tl.program_id(0)
    n, c = nc // C, nc % C
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    zoff = n * z_batch_stride + c * HW + offs
    x = tl.load(x_ptr + nc * HW + offs, mask=mask, other=0.0)
    y0 = tl.load(z0_ptr + zoff, mask=mask, other=0.0) * tl.load(scale_ptr + c) + tl.load(shift_ptr + c)
    y1 = tl.load(z1_ptr + zoff, mask=mask, other=0.0) * tl.load(scale_ptr + C + c) + tl.load(shift_ptr + C + c)
    y2 = tl.load(z2_ptr + zoff, mask=mask, other=0.0) * tl.load(scale_ptr + 2 * C + c) + tl.load(shift_ptr + 2 * C + c)
    out = tl.load(alpha_ptr) * x + tl.load(alpha_ptr + 1) * tl.maximum(y0, 0.0)
    out = out + tl.load(alpha_ptr + 2) * tl.maximum(y1, 0.0)
    out = out + tl.load(alpha_ptr + 3) * tl.maximum(y2, 0.0)
    tl.store(out_ptr + nc * HW + offs, out, mask=mask)


@triton.jit
def _backward_reduce(g_ptr, x_ptr, z_ptr, mean_ptr, invstd_ptr, scale_ptr, shift_ptr, a_k_ptr, sum_gy_ptr,
                     sum_gy_xhat_ptr, sum_g_r_ptr, sum_g_x_ptr, N, C, HW, z_batch_stride,
                     WITH_GX: tl.constexpr, BLOCK: tl.constexpr):
    c = tl.program_id(0)
    mean, invstd = tl.load(mean_ptr + c), tl.load(invstd_ptr + c)
    scale, shift = tl.load(scale_ptr + c), tl.load(shift_ptr + c)
    a_k = tl.load(a_k_ptr)  # read on the device: no host sync (CUDA-graph capturable)
    s_gy = tl.zeros([BLOCK], dtype=tl.float32)
    s_gyx = tl.zeros([BLOCK], dtype=tl.float32)
    s_gr = tl.zeros([BLOCK], dtype=tl.float32)
    s_gx = tl.zeros([BLOCK], dtype=tl.float32)
    for n in range(0, N):
        for start in range(0, HW, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < HW
            g = tl.load(g_ptr + (n * C + c) * HW + offs, mask=mask, other=0.0)
            z = tl.load(z_ptr + n * z_batch_stride + c * HW + offs, mask=mask, other=0.0)
            y = z * scale + shift
            pos = (y > 0) & mask
            gy = tl.where(pos, a_k * g, 0.0)
            s_gy += gy
            s_gyx += gy * (z - mean) * invstd
            s_gr += tl.where(pos, g * y, 0.0)
            if WITH_GX:
                s_gx += g * tl.load(x_ptr + (n * C + c) * HW + offs, mask=mask, other=0.0)
    tl.store(sum_gy_ptr + c, tl.sum(s_gy, axis=0))
    tl.store(sum_gy_xhat_ptr + c, tl.sum(s_gyx, axis=0))
    tl.store(sum_g_r_ptr + c, tl.sum(s_gr, axis=0))
    if WITH_GX:
        tl.store(sum_g_x_ptr + c, tl.sum(s_gx, axis=0))


@triton.jit
def _backward_grad_z(g_ptr, z0_ptr, z1_ptr, z2_ptr, gz0_ptr, gz1_ptr, gz2_ptr, mean_ptr, invstd_ptr, scale_ptr,
                     shift_ptr, alpha_ptr, mgy_ptr, mgyx_ptr, C, HW, z_batch_stride, BLOCK: tl.constexpr):
    nc = tl.program_id(0)
    n, c = nc // C, nc % C
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    g = tl.load(g_ptr + nc * HW + offs, mask=mask, other=0.0)
    zoff = n * z_batch_stride + c * HW + offs
    # One branch per statement block; the three differ only in their pointers and (k, c) constants.
    for k in tl.static_range(3):
        if k == 0:
            z_ptr, gz_ptr = z0_ptr, gz0_ptr
        elif k == 1:
            z_ptr, gz_ptr = z1_ptr, gz1_ptr
        else:
            z_ptr, gz_ptr = z2_ptr, gz2_ptr
        kc = k * C + c
        scale, shift = tl.load(scale_ptr + kc), tl.load(shift_ptr + kc)
        z = tl.load(z_ptr + zoff, mask=mask, other=0.0)
        y = z * scale + shift
        gy = tl.where(y > 0, tl.load(alpha_ptr + k + 1) * g, 0.0)
        x_hat = (z - tl.load(mean_ptr + kc)) * tl.load(invstd_ptr + kc)
        gz = scale * (gy - tl.load(mgy_ptr + kc) - x_hat * tl.load(mgyx_ptr + kc))
        tl.store(gz_ptr + zoff, gz, mask=mask)


def _affine(bn_weight, bn_bias, mean, var, eps):
    invstd = torch.rsqrt(var + eps)
    scale = bn_weight * invstd
    return invstd.contiguous(), scale.contiguous(), (bn_bias - mean * scale).contiguous()


def _keep(zs, keep, x):
    return torch.stack([z.contiguous() for z in zs]) if keep else x.new_empty(0)


def mixed_op_forward(x, w3, w5, w7, bn_weight, bn_bias, alpha, running_mean, running_var, training, eps,
                     groups=1, keep=False, conv_dtype=None):
    x_full = x.contiguous()
    zs = mixed_convs(x_full, w3, w5, w7, use_stacked_conv(x.shape[1]) and groups == 1, conv_dtype)
    saved = _keep(zs, keep, x_full)
    x = grouped_view(x_full, groups)
    zs = [grouped_view(z, groups) for z in zs] if groups > 1 else zs
    n, c, h, w = x.shape
    hw = h * w
    zstride = zs[0].stride(0)
    if training:
        mean, var = x.new_empty(3, c), x.new_empty(3, c)
        for k in range(3):
            _channel_stats[(c,)](zs[k], mean[k], var[k], n, c, hw, zstride, BLOCK=BLOCK)
    else:
        mean, var = running_mean.detach().clone(), running_var.detach().clone()
    _, scale, shift = _affine(bn_weight.detach(), bn_bias.detach(), mean, var, eps)
    out = torch.empty_like(x)
    _forward_epilogue[(n * c, triton.cdiv(hw, BLOCK))](x, *zs, scale, shift, alpha.detach().contiguous(), out, c,
                                                       hw, zstride, BLOCK=BLOCK)
    return out.view(x_full.shape), mean, var, saved


def mixed_op_backward(grad_out, x, w3, w5, w7, bn_weight, bn_bias, alpha, mean, var, saved, training, eps,
                      groups, need_input_grad, need_weight_grad, conv_dtype=None):
    x_full, g_full = x.contiguous(), grad_out.contiguous()
    stacked = use_stacked_conv(x.shape[1]) and groups == 1 and saved.numel() == 0
    # The recompute, unless the forward kept the conv outputs.
    zs = list(saved.contiguous().unbind(0)) if saved.numel() else mixed_convs(x_full, w3, w5, w7, stacked, conv_dtype)
    x, g = grouped_view(x_full, groups), grouped_view(g_full, groups)
    zs = [grouped_view(z, groups) for z in zs] if groups > 1 else zs
    n, c, h, w = x.shape
    hw = h * w
    zstride = zs[0].stride(0)
    invstd, scale, shift = _affine(bn_weight, bn_bias, mean, var, eps)
    a = alpha.detach().float().contiguous()
    sum_gy, sum_gyx, sum_gr = (x.new_empty(3, c) for _ in range(3))
    sum_gx = x.new_empty(c)
    for k in range(3):
        _backward_reduce[(c,)](g, x, zs[k], mean[k], invstd[k], scale[k], shift[k], a[k + 1:k + 2], sum_gy[k],
                               sum_gyx[k], sum_gr[k], sum_gx, n, c, hw, zstride, WITH_GX=(k == 0), BLOCK=BLOCK)
    count = n * hw
    mgy = sum_gy / count if training else torch.zeros_like(sum_gy)
    mgyx = sum_gyx / count if training else torch.zeros_like(sum_gyx)
    gz_full = torch.empty(n, 3 * c, h, w, dtype=x.dtype, device=x.device) if stacked else None
    gzs = list(gz_full.chunk(3, dim=1)) if stacked else [torch.empty_like(z) for z in zs]
    _backward_grad_z[(n * c, triton.cdiv(hw, BLOCK))](g, *zs, *gzs, mean.contiguous(), invstd, scale, shift, a,
                                                      mgy.contiguous(), mgyx.contiguous(), c, hw, zstride,
                                                      BLOCK=BLOCK)
    gzs = [gz_full] if stacked else [t.view(x_full.shape) for t in gzs]
    gx, gws = mixed_convs_backward(x_full, gzs, w3, w5, w7, stacked, need_input_grad, need_weight_grad,
                                   conv_dtype)
    gx = gx + alpha[0] * g_full if need_input_grad else x.new_empty(0)
    gws = gws if need_weight_grad else [t.new_empty(0) for t in (w3, w5, w7)]
    g_alpha = torch.cat([sum_gx.sum().reshape(1), sum_gr.sum(dim=1)]).to(alpha.dtype)
    return (gx, *gws, sum_gyx.to(bn_weight.dtype), sum_gy.to(bn_bias.dtype), g_alpha)
