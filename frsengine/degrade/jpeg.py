"""Batched JPEG encode+decode round trip in torch (baseline JPEG, 4:2:0, libjpeg tables).

It follows what libjpeg does with OpenCV's defaults (JFIF YCbCr, 2x2 chroma averaging,
orthonormal 8x8 DCT, the Annex K tables scaled by `quality` as `jpeg_quality_scaling`,
"fancy" triangular chroma upsampling), with float arithmetic in place of libjpeg's
fixed-point integer DCT. Quality can differ per sample. The rounding to quantised
coefficients is a hard `round`, so this op is not differentiable (the engine only needs
it to synthesise data). How far it is from a real codec is measured in
tests/degrade/test_jpeg.py and documented in README.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
]


def quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """libjpeg's quality scaling (baseline: entries clamped to 1..255); returns (B,64) luma
    and chroma tables for integer qualities (B,)."""
    q = quality.to(torch.float64).clamp(1, 100)
    scale = torch.where(q < 50, torch.floor(5000.0 / q), 200.0 - 2.0 * q)[:, None]
    luma = torch.tensor(_LUMA, dtype=torch.float64, device=q.device)
    chroma = torch.tensor(_CHROMA, dtype=torch.float64, device=q.device)
    tl = torch.floor((luma * scale + 50.0) / 100.0).clamp(1, 255)
    tc = torch.floor((chroma * scale + 50.0) / 100.0).clamp(1, 255)
    return tl.float(), tc.float()


@functools.lru_cache(maxsize=8)
def _dct8(device: str) -> torch.Tensor:
    """Orthonormal 1-D 8-point DCT-II matrix (row k = frequency k)."""
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(device)


def _dct64(device: str) -> torch.Tensor:
    """2-D 8x8 DCT as a 64x64 matrix acting on row-major flattened blocks (float64)."""
    d = _dct8(device)
    return torch.kron(d, d)


@functools.lru_cache(maxsize=16)
def _fancy_up_matrix(n: int, device: str) -> torch.Tensor:
    """(2n, n) matrix of libjpeg's triangular 2x upsampling (3/4 near, 1/4 far, edges clamped)."""
    u = torch.zeros(2 * n, n, dtype=torch.float64)
    i = torch.arange(n)
    u[2 * i, i] += 0.75
    u[2 * i, (i - 1).clamp(min=0)] += 0.25
    u[2 * i + 1, i] += 0.75
    u[2 * i + 1, (i + 1).clamp(max=n - 1)] += 0.25
    return u.float().to(device)


# JFIF colour transforms as 3x3 matrices (weights, bias) in 0..255 units.
_RGB2YCC = ([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
            [0.0, 128.0, 128.0])
_YCC2RGB = ([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]],
            [-1.402 * 128.0, (0.344136 + 0.714136) * 128.0, -1.772 * 128.0])


def _colour(x: torch.Tensor, transform) -> torch.Tensor:
    w, b = transform
    weight = torch.tensor(w, dtype=x.dtype, device=x.device)
    bias = torch.tensor(b, dtype=x.dtype, device=x.device)[:, None]
    # A (3,3) @ (B,3,HW) matmul: far faster than a 1x1 convolution on CPU.
    return torch.matmul(weight, x.flatten(2)).add_(bias).view_as(x)


def _blocks(x: torch.Tensor) -> torch.Tensor:
    b, h, w = x.shape
    return x.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(b, (h // 8) * (w // 8), 64)


def _unblocks(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b = x.shape[0]
    return x.reshape(b, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h, w)


def _code_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Level shift, DCT, quantise, dequantise, inverse DCT, round and clamp one (B,H,W)
    plane in 0..255 with per-sample tables (B,64). Quantiser scaling and level shift are
    folded into the two batched matmuls."""
    d = _dct64(str(plane.device))
    t = table.to(torch.float64)
    fwd = (d.T[None] / t[:, None, :]).to(plane.dtype)  # blocks @ fwd = DCT / T
    inv = (t[:, :, None] * d[None]).to(plane.dtype)  # q @ inv = IDCT(q * T)
    # The -128 level shift only moves the DC coefficient, by -1024 (orthonormal 8x8 DCT).
    shift = torch.zeros_like(t, dtype=plane.dtype)
    shift[:, 0] = -1024.0 / t[:, 0]
    h, w = plane.shape[-2:]
    q = torch.baddbmm(shift[:, None, :], _blocks(plane), fwd).round_()
    rec = torch.baddbmm(torch.full((1, 1, 1), 128.0, dtype=plane.dtype, device=plane.device), q, inv)
    return _unblocks(rec.round_().clamp_(0, 255), h, w)


def jpeg_roundtrip(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Encode and decode a batch (B,3,H,W) of RGB images in [0,1] at per-sample integer
    `quality` (B,); returns 8-bit levels in [0,1]. H and W need not be multiples of 16:
    edges are replicated as libjpeg does."""
    return jpeg_roundtrip_255(x.float().clamp(0, 1).mul(255.0), quality).div_(255.0).to(x.dtype)


def jpeg_roundtrip_255(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """`jpeg_roundtrip` on float32 images in 0..255 units (returns integers in 0..255)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"jpeg_roundtrip expects (B,3,H,W) RGB, got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    ph, pw = -h % 16, -w % 16
    rgb = x.round().clamp_(0, 255)
    if ph or pw:
        rgb = F.pad(rgb, (0, pw, 0, ph), mode="replicate")
    hp, wp = rgb.shape[-2:]
    ycc = _colour(rgb, _RGB2YCC).round_().clamp_(0, 255)
    chroma = F.avg_pool2d(ycc[:, 1:], 2).round_()  # 4:2:0
    tl, tc = quant_tables(quality.to(x.device))
    y = _code_plane(ycc[:, 0], tl)
    chroma = _code_plane(chroma.reshape(b * 2, hp // 2, wp // 2), tc.repeat_interleave(2, 0))
    dev = str(x.device)
    chroma = _fancy_up_matrix(hp // 2, dev) @ chroma @ _fancy_up_matrix(wp // 2, dev).T
    ycc = torch.cat([y[:, None], chroma.reshape(b, 2, hp, wp)], 1)
    out = _colour(ycc, _YCC2RGB).round_().clamp_(0, 255)
    return out[..., :h, :w]
