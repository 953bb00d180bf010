"""Batched degradation in torch: runs on CPU or CUDA tensors, all samples of a batch at once.

Samples of one batch have different down-sampling factors, so the low-resolution stage
lives on a shared canvas: sample b's LR image fills the top-left m_b x m_b pixels and its
edge pixels are replicated over the rest, which is exactly how a JPEG encoder pads an
image to whole blocks. Resizes are per-sample matrices (rows of the resampling operator,
taken from `torch.nn.functional.interpolate` itself) applied as batched matmuls; blur is
an FFT convolution with each sample's own kernel; after every step the image is rounded
to 8-bit levels, as a pipeline that stores uint8 images does.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from frsengine.degrade.jpeg import jpeg_roundtrip
from frsengine.degrade.params import SampleParams, blur_kernel2d
from frsengine.degrade.presets import Preset

# Generator streams: the full degradation's noise and the noise-only single differ.
_SINGLE_NOISE_STREAM = 0x5EED


def quantize8(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0,1] and round to 8-bit levels (what storing a uint8 image does)."""
    return x.clamp(0.0, 1.0).mul_(255.0).round_().div_(255.0)


@functools.lru_cache(maxsize=1024)
def _resize_matrix_cpu(n_in: int, n_out: int, antialias: bool) -> torch.Tensor:
    eye = torch.eye(n_in, dtype=torch.float64).view(1, 1, n_in, n_in)
    # Resizing only the last axis of the identity gives, row by row, the operator's columns.
    m = F.interpolate(eye, size=(n_in, n_out), mode="bicubic", align_corners=False,
                      antialias=antialias and n_out < n_in)
    return m[0, 0].T.contiguous().float()  # (n_out, n_in): y = M @ x


def resize_matrix(n_in: int, n_out: int, antialias: bool, device) -> torch.Tensor:
    """(n_out, n_in) matrix of torch's bicubic resize along one axis (half-pixel centres)."""
    return _resize_matrix_cpu(n_in, n_out, antialias).to(device)


def blur(x: torch.Tensor, kernels: list[np.ndarray]) -> torch.Tensor:
    """Convolve each sample with its own odd square kernel; borders reflect (OpenCV's
    BORDER_REFLECT_101). FFT makes the cost independent of the kernel size."""
    b, c, h, w = x.shape
    r = min(max(k.shape[0] for k in kernels) // 2, h - 1, w - 1)
    size = 2 * r + 1
    kpad = torch.zeros(b, size, size, dtype=torch.float64)
    for i, k in enumerate(kernels):
        kr = min(k.shape[0] // 2, r)
        k = k[k.shape[0] // 2 - kr: k.shape[0] // 2 + kr + 1, k.shape[1] // 2 - kr: k.shape[1] // 2 + kr + 1]
        kpad[i, r - kr: r + kr + 1, r - kr: r + kr + 1] = torch.from_numpy(k / k.sum())
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    hp, wp = xp.shape[-2:]
    kimg = torch.zeros(b, hp, wp, dtype=torch.float32, device=x.device)
    kimg[:, :size, :size] = kpad.float().to(x.device)
    kimg = torch.roll(kimg, shifts=(-r, -r), dims=(1, 2))  # kernel centre at (0, 0)
    y = torch.fft.irfft2(torch.fft.rfft2(xp) * torch.fft.rfft2(kimg)[:, None], s=(hp, wp))
    return y[..., r: r + h, r: r + w]


def _canvas_index(sizes: list[int], canvas: int, device) -> torch.Tensor:
    ar = torch.arange(canvas, device=device)
    return torch.minimum(ar[None, :], torch.tensor(sizes, device=device)[:, None] - 1)


def fill_canvas(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Replicate each sample's last valid row/column over the rest of the canvas."""
    b, c, h, w = x.shape
    idx = _canvas_index(sizes, h, x.device)
    x = x.gather(2, idx[:, None, :, None].expand(b, c, h, w))
    return x.gather(3, idx[:, None, None, :].expand(b, c, h, w))


def _apply_separable(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x (B,C,n,n) -> rows @ x @ rows^T per sample, rows (B,m,n)."""
    return rows[:, None] @ x @ rows[:, None].transpose(-1, -2)


def down_matrices(sizes: list[int], n: int, canvas: int, antialias: bool, device) -> torch.Tensor:
    """(B, canvas, n) down-sampling rows; rows past m_b repeat row m_b - 1 (edge replication)."""
    mats = []
    for m in sizes:
        r = resize_matrix(n, m, antialias, device)
        mats.append(torch.cat([r, r[-1:].expand(canvas - m, n)]) if canvas > m else r)
    return torch.stack(mats)


def up_matrices(sizes: list[int], n: int, canvas: int, device) -> torch.Tensor:
    """(B, n, canvas) up-sampling rows reading only each sample's valid m_b columns."""
    mats = torch.zeros(len(sizes), n, canvas, device=device)
    for i, m in enumerate(sizes):
        mats[i, :, :m] = resize_matrix(m, n, False, device)
    return mats


def make_noise(params: list[SampleParams], shape: tuple[int, ...], sizes: list[int] | None,
               per_channel: bool, device, stream: int = 0) -> torch.Tensor:
    """Per-sample noise in [0,1] units from each sample's own generator (batch-independent)."""
    out = torch.zeros((len(params),) + shape, device=device)
    c, h, w = shape
    for i, p in enumerate(params):
        m_h, m_w = (sizes[i], sizes[i]) if sizes else (h, w)
        g = torch.Generator(device=device)
        g.manual_seed((p.noise_seed ^ stream) & (2**63 - 1))
        nshape = (c if per_channel else 1, m_h, m_w)
        if p.noise_kind == "gaussian":
            n = torch.randn(nshape, generator=g, device=device) * p.noise_level
        elif p.noise_kind == "laplace":
            u = torch.rand(nshape, generator=g, device=device) - 0.5
            n = -p.noise_level * torch.sign(u) * torch.log1p(-2.0 * u.abs())
        else:  # poisson with a random sign (imgaug's AdditivePoissonNoise)
            lam = torch.full(nshape, p.noise_level, device=device)
            mag = torch.poisson(lam, generator=g)
            sign = torch.randint(0, 2, nshape, generator=g, device=device) * 2 - 1
            n = mag * sign
        out[i, :, :m_h, :m_w] = n / 255.0
    return out


class TorchBackend:
    """Batched torch implementation of a preset's full and single degradations."""

    name = "torch"

    def __init__(self, device: str | torch.device | None = None):
        self.device = torch.device(device) if device is not None else None

    def run(self, hq: torch.Tensor, params: list[SampleParams], preset: Preset,
            singles: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = hq.to(self.device) if self.device is not None else hq
        b, c, h, w = x.shape
        if h != w:
            raise ValueError(f"degradation expects square HQ images, got {h}x{w}")
        kernels = [blur_kernel2d(p, preset.blur.truncate) for p in params]
        quality = torch.tensor([p.jpeg_quality for p in params], device=x.device)
        lr_sizes = [p.lr_size(h) for p in params]
        canvas = min(h, -(-max(lr_sizes) // 16) * 16)

        blurred = quantize8(blur(x, kernels))
        cur, sizes = x, None
        for op in preset.order:
            if op == "blur":
                cur = blurred if sizes is None and cur is x else quantize8(blur(cur, kernels))
            elif op == "down":
                rows = down_matrices(lr_sizes, h, canvas, preset.down.antialias, x.device)
                cur, sizes = quantize8(_apply_separable(cur, rows)), lr_sizes
            elif op == "noise":
                noise = make_noise(params, (c,) + cur.shape[-2:], sizes, preset.noise.per_channel, x.device)
                cur = quantize8(cur + noise)
            elif op == "jpeg":
                cur = jpeg_roundtrip(cur, quality)
            if sizes is not None:
                cur = fill_canvas(cur, sizes)
        full = cur
        if sizes is not None:
            full = quantize8(_apply_separable(cur, up_matrices(sizes, h, canvas, x.device)))
        if not singles:
            return full, None

        noisy = quantize8(x + make_noise(params, (c, h, w), None, preset.noise.per_channel,
                                         x.device, stream=_SINGLE_NOISE_STREAM))
        jpeg = jpeg_roundtrip(x, quality)
        # The LR image is stored as uint8 before it is enlarged again.
        lr = quantize8(_apply_separable(x, down_matrices(lr_sizes, h, canvas, preset.down.antialias, x.device)))
        down_up = quantize8(_apply_separable(lr, up_matrices(lr_sizes, h, canvas, x.device)))
        return full, torch.stack([blurred, noisy, jpeg, down_up], 1)
