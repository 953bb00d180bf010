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
def _dct64(device: str) -> torch.Tensor:
    """Orthonormal 2-D 8x8 DCT-II as a 64x64 matrix acting on row-major flattened blocks."""
    n = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return torch.kron(d, d).float().to(device)


def _blocks(x: torch.Tensor) -> torch.Tensor:
    b, h, w = x.shape
    return x.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h // 8, w // 8, 64)


def _unblocks(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b = x.shape[0]
    return x.reshape(b, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h, w)


def _code_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """DCT, quantise, dequantise, inverse DCT of one (B,H,W) plane in 0..255."""
    d = _dct64(str(plane.device))
    h, w = plane.shape[-2:]
    coef = (_blocks(plane - 128.0) @ d.T) / table[:, None, None, :]
    rec = (torch.round(coef) * table[:, None, None, :]) @ d
    return torch.round(_unblocks(rec, h, w) + 128.0).clamp(0, 255)


def _fancy_up(c: torch.Tensor) -> torch.Tensor:
    """libjpeg's triangular 2x upsampling (3/4 near sample, 1/4 far sample) in H and W."""
    def up(x: torch.Tensor, dim: int) -> torch.Tensor:
        dim, n = dim % x.dim(), x.shape[dim]
        prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
        nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
        even, odd = 0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt
        return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)
    return up(up(c, -2), -1)


def jpeg_roundtrip(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Encode and decode a batch (B,3,H,W) of RGB images in [0,1] at per-sample integer
    `quality` (B,); returns 8-bit levels in [0,1]. H and W need not be multiples of 16:
    edges are replicated as libjpeg does."""
    if x.shape[1] != 3:
        raise ValueError(f"jpeg_roundtrip expects 3-channel RGB, got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    ph, pw = -h % 16, -w % 16
    rgb = torch.round(x.float().clamp(0, 1) * 255.0)
    if ph or pw:
        rgb = F.pad(rgb, (0, pw, 0, ph), mode="replicate")
    r, g, bl = rgb.unbind(1)
    y = torch.round(0.299 * r + 0.587 * g + 0.114 * bl)
    cb = torch.round(-0.168736 * r - 0.331264 * g + 0.5 * bl + 128.0).clamp(0, 255)
    cr = torch.round(0.5 * r - 0.418688 * g - 0.081312 * bl + 128.0).clamp(0, 255)
    chroma = torch.round(F.avg_pool2d(torch.stack([cb, cr], 1), 2))  # 4:2:0
    tl, tc = quant_tables(quality.to(x.device))
    y = _code_plane(y, tl)
    hc, wc = chroma.shape[-2:]
    chroma = _code_plane(chroma.reshape(b * 2, hc, wc), tc.repeat_interleave(2, 0)).reshape(b, 2, hc, wc)
    cb, cr = _fancy_up(chroma).unbind(1)
    cb, cr = cb - 128.0, cr - 128.0
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    out = torch.round(out).clamp(0, 255) / 255.0
    return out[..., :h, :w].to(x.dtype)
