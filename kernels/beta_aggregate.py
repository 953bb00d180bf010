"""Triton kernels of the beta-weighted multi-scale aggregation and their host functions.

Forward: one program per (plane, block of output pixels) gathers the four bilinear taps
(align_corners=True, fp32 coordinates as ATen) of up to three inputs and writes
sum_i beta_i * sample_i once. Backward: the same gather recomputes sample_i for the beta gradient
(per-program partial sums, reduced by torch in a fixed order) while beta_i * g is scattered into
the input gradients with atomic adds (neighbouring output pixels share taps).
Contract: ``frsengine.ops.beta_aggregation``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 256


@triton.jit
def _taps(oh, ow, H, W, scale_h, scale_w):
    sh = oh.to(tl.float32) * scale_h
    sw = ow.to(tl.float32) * scale_w
    h0 = sh.to(tl.int32)
    w0 = sw.to(tl.int32)
    h1 = tl.where(h0 < H - 1, h0 + 1, h0)
    w1 = tl.where(w0 < W - 1, w0 + 1, w0)
    lh = sh - h0.to(tl.float32)
    lw = sw - w0.to(tl.float32)
    return h0, h1, w0, w1, lh, lw


@triton.jit
def _sample(x_ptr, plane, oh, ow, mask, H, W, scale_h, scale_w):
    h0, h1, w0, w1, lh, lw = _taps(oh, ow, H, W, scale_h, scale_w)
    base = x_ptr + plane * H * W
    v00 = tl.load(base + h0 * W + w0, mask=mask, other=0.0)
    v01 = tl.load(base + h0 * W + w1, mask=mask, other=0.0)
    v10 = tl.load(base + h1 * W + w0, mask=mask, other=0.0)
    v11 = tl.load(base + h1 * W + w1, mask=mask, other=0.0)
    return (1.0 - lh) * ((1.0 - lw) * v00 + lw * v01) + lh * ((1.0 - lw) * v10 + lw * v11)


@triton.jit
def _scatter(gx_ptr, plane, oh, ow, mask, H, W, scale_h, scale_w, v):
    h0, h1, w0, w1, lh, lw = _taps(oh, ow, H, W, scale_h, scale_w)
    base = gx_ptr + plane * H * W
    tl.atomic_add(base + h0 * W + w0, v * (1.0 - lh) * (1.0 - lw), mask=mask)
    tl.atomic_add(base + h0 * W + w1, v * (1.0 - lh) * lw, mask=mask)
    tl.atomic_add(base + h1 * W + w0, v * lh * (1.0 - lw), mask=mask)
    tl.atomic_add(base + h1 * W + w1, v * lh * lw, mask=mask)


@triton.jit
def _aggregate_forward(x0, x1, x2, beta_ptr, out_ptr, H0, W0, H1, W1, H2, W2, sh0, sw0, sh1, sw1, sh2, sw2,
                       OH, OW, K: tl.constexpr, BLOCK: tl.constexpr):
    plane = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < OH * OW
    oh, ow = offs // OW, offs % OW
    acc = tl.load(beta_ptr) * _sample(x0, plane, oh, ow, mask, H0, W0, sh0, sw0)
    if K > 1:
        acc = acc + tl.load(beta_ptr + 1) * _sample(x1, plane, oh, ow, mask, H1, W1, sh1, sw1)
    if K > 2:
        acc = acc + tl.load(beta_ptr + 2) * _sample(x2, plane, oh, ow, mask, H2, W2, sh2, sw2)
    tl.store(out_ptr + plane * OH * OW + offs, acc, mask=mask)


@triton.jit
def _aggregate_backward(g_ptr, x0, x1, x2, gx0, gx1, gx2, beta_ptr, partial_ptr, H0, W0, H1, W1, H2, W2,
                        sh0, sw0, sh1, sw1, sh2, sw2, OH, OW, K: tl.constexpr, NEED_X: tl.constexpr,
                        BLOCK: tl.constexpr):
    plane = tl.program_id(0)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < OH * OW
    oh, ow = offs // OW, offs % OW
    g = tl.load(g_ptr + plane * OH * OW + offs, mask=mask, other=0.0)
    slot = partial_ptr + (plane * tl.num_programs(1) + blk) * K
    tl.store(slot, tl.sum(g * _sample(x0, plane, oh, ow, mask, H0, W0, sh0, sw0), axis=0))
    if NEED_X:
        _scatter(gx0, plane, oh, ow, mask, H0, W0, sh0, sw0, tl.load(beta_ptr) * g)
    if K > 1:
        tl.store(slot + 1, tl.sum(g * _sample(x1, plane, oh, ow, mask, H1, W1, sh1, sw1), axis=0))
        if NEED_X:
            _scatter(gx1, plane, oh, ow, mask, H1, W1, sh1, sw1, tl.load(beta_ptr + 1) * g)
    if K > 2:
        tl.store(slot + 2, tl.sum(g * _sample(x2, plane, oh, ow, mask, H2, W2, sh2, sw2), axis=0))
        if NEED_X:
            _scatter(gx2, plane, oh, ow, mask, H2, W2, sh2, sw2, tl.load(beta_ptr + 2) * g)


def _scale(src: int, dst: int) -> float:
    return (src - 1) / (dst - 1) if dst > 1 else 0.0


def _geometry(inputs, out_h, out_w):
    """Padded to three inputs (unused slots repeat input 0; K tells the kernel how many are real)."""
    xs = [x.contiguous() for x in inputs]
    padded = xs + [xs[0]] * (3 - len(xs))
    sizes = [s for x in padded for s in x.shape[-2:]]
    scales = [s for x in padded for s in (_scale(x.shape[2], out_h), _scale(x.shape[3], out_w))]
    return xs, padded, sizes, scales


def beta_aggregate_forward(inputs, beta, out_h, out_w):
    xs, padded, sizes, scales = _geometry(inputs, out_h, out_w)
    n, c = xs[0].shape[:2]
    out = xs[0].new_empty(n, c, out_h, out_w)
    grid = (n * c, triton.cdiv(out_h * out_w, BLOCK))
    _aggregate_forward[grid](*padded, beta.detach().contiguous(), out, *sizes, *scales, out_h, out_w, K=len(xs),
                             BLOCK=BLOCK)
    return out


def beta_aggregate_backward(grad_out, inputs, beta, need_input_grad):
    xs, padded, sizes, scales = _geometry(inputs, grad_out.shape[2], grad_out.shape[3])
    n, c, out_h, out_w = grad_out.shape
    grid = (n * c, triton.cdiv(out_h * out_w, BLOCK))
    # fp32 accumulation buffers for the atomic scatter, cast back at the end.
    gxs = [torch.zeros(x.shape, dtype=torch.float32, device=x.device) for x in xs]
    gpad = gxs + [gxs[0]] * (3 - len(gxs))
    partial = torch.empty(grid[0] * grid[1], len(xs), dtype=torch.float32, device=grad_out.device)
    _aggregate_backward[grid](grad_out.contiguous(), *padded, *gpad, beta.detach().contiguous(), partial, *sizes,
                              *scales, out_h, out_w, K=len(xs), NEED_X=need_input_grad, BLOCK=BLOCK)
    g_beta = partial.sum(dim=0).to(beta.dtype)
    return ([g.to(x.dtype) for g, x in zip(gxs, xs)] if need_input_grad else []) + [g_beta]
