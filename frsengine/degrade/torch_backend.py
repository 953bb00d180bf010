"""Batched degradation in torch: runs on CPU or CUDA tensors, all samples of a batch at once.

Every linear step is a per-sample matrix pair applied as two batched matmuls
(`Y = A X B^T`), which is what CPUs and GPUs do fastest:
- Gaussian blur: banded Toeplitz matrices with OpenCV's BORDER_REFLECT_101 folded in;
- resizes: the rows of torch's own bicubic `interpolate` operator (antialiased or not);
- motion blur (not separable): FFT convolution with each sample's kernel.
Samples of one batch have different down-sampling factors, so the low-resolution stage
lives on a shared canvas: sample b's LR image fills the top-left m_b x m_b pixels and its
edge pixels are replicated over the rest, which is how a JPEG encoder pads an image to
whole blocks. Images are kept in 0..255 float units and rounded to integers after every
step, as a pipeline that stores uint8 images does.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from frsengine.degrade.jpeg import jpeg_roundtrip_255
from frsengine.degrade.params import SINGLE_NOISE_STREAM, SampleParams, blur_kernel2d, gaussian_kernel1d
from frsengine.degrade.presets import Preset



def _quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to integer levels in 0..255 (in place)."""
    return x.round_().clamp_(0.0, 255.0)


@functools.lru_cache(maxsize=2048)
def _resize_matrix_cpu(n_in: int, n_out: int, antialias: bool, rows: int) -> torch.Tensor:
    eye = torch.eye(n_in, dtype=torch.float64).view(1, 1, n_in, n_in)
    # Resizing only the last axis of the identity gives the operator's columns.
    m = F.interpolate(eye, size=(n_in, n_out), mode="bicubic", align_corners=False,
                      antialias=antialias and n_out < n_in)[0, 0].T.float()
    if rows > n_out:  # extra rows repeat the last one: the canvas is edge-replicated
        m = torch.cat([m, m[-1:].expand(rows - n_out, n_in)])
    return m.contiguous()


def resize_matrix(n_in: int, n_out: int, antialias: bool, device=None, rows: int | None = None) -> torch.Tensor:
    """(rows, n_in) matrix of torch's bicubic resize n_in -> n_out along one axis
    (half-pixel centres); `rows` > n_out pads it with copies of the last row."""
    return _resize_matrix_cpu(n_in, n_out, antialias, rows or n_out).to(device)


def _reflect101(i: torch.Tensor, n: int) -> torch.Tensor:
    period = 2 * (n - 1)
    i = torch.remainder(i, period)
    return torch.where(i < n, i, period - i)


def gaussian_matrices(sigmas: list[float], truncate: float, n: int, device) -> torch.Tensor:
    """(B, n, n) Gaussian blur matrices with BORDER_REFLECT_101 borders."""
    kernels = [gaussian_kernel1d(s, truncate) for s in sigmas]
    r = max(len(k) for k in kernels) // 2
    taps = torch.zeros(len(kernels), 2 * r + 1, dtype=torch.float64)
    for i, k in enumerate(kernels):
        kr = len(k) // 2
        taps[i, r - kr: r + kr + 1] = torch.from_numpy(k)
    cols = _reflect101(torch.arange(n)[:, None] + torch.arange(-r, r + 1)[None, :], n)
    g = torch.zeros(len(kernels), n, n, dtype=torch.float64)
    g.scatter_add_(2, cols.expand(len(kernels), n, 2 * r + 1).contiguous(),
                   taps[:, None, :].expand(len(kernels), n, 2 * r + 1).contiguous())
    return g.float().to(device)


def _smooth_size(n: int) -> int:
    """Smallest m >= n whose only prime factors are 2, 3 and 5 (fast FFT sizes)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def fft_blur(x: torch.Tensor, kernels: list[np.ndarray]) -> torch.Tensor:
    """Convolve each sample with its own odd square kernel (BORDER_REFLECT_101 borders)."""
    b, c, h, w = x.shape
    r = min(max(k.shape[0] for k in kernels) // 2, h - 1, w - 1)
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    # Zero padding past the reflected border up to an FFT-friendly size: the circular
    # wrap-around then only touches pixels that are cropped away.
    fh, fw = _smooth_size(h + 2 * r), _smooth_size(w + 2 * r)
    kimg = torch.zeros(b, fh, fw, dtype=torch.float32)
    for i, k in enumerate(kernels):
        kr, c0 = min(k.shape[0] // 2, r), k.shape[0] // 2
        k = k[c0 - kr: c0 + kr + 1, c0 - kr: c0 + kr + 1]
        kimg[i, r - kr: r + kr + 1, r - kr: r + kr + 1] = torch.from_numpy(k / k.sum())
    kimg = torch.roll(kimg, shifts=(-r, -r), dims=(1, 2)).to(x.device)  # kernel centre at (0, 0)
    y = torch.fft.irfft2(torch.fft.rfft2(xp, s=(fh, fw)) * torch.fft.rfft2(kimg)[:, None], s=(fh, fw))
    return y[..., r: r + h, r: r + w]


def apply_rows(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample `A @ X @ B^T` for X (N,C,n,n), A (N,p,n), B (N,q,n) (B defaults to A),
    as two plain batched matmuls (no broadcast copies)."""
    b = a if b is None else b
    n_, c, h, w = x.shape
    y = torch.bmm(x.reshape(n_, c * h, w), b.transpose(1, 2))  # (N, C*h, q)
    y = y.view(n_, c, h, -1).transpose(2, 3).reshape(n_, c * y.shape[-1], h)  # (N, C*q, h)
    z = torch.bmm(y, a.transpose(1, 2))  # (N, C*q, p)
    return z.view(n_, c, -1, a.shape[1]).transpose(2, 3).contiguous()


def fill_canvas(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Replicate each sample's last valid row/column over the rest of the canvas."""
    b, c, h, w = x.shape
    ar = torch.arange(h, device=x.device)
    idx = torch.minimum(ar[None, :], torch.tensor(sizes, device=x.device)[:, None] - 1)
    x = x.gather(2, idx[:, None, :, None].expand(b, c, h, w))
    return x.gather(3, idx[:, None, None, :].expand(b, c, h, w))


def poisson_by_inverse_cdf(lam: float, shape: tuple[int, ...], generator: torch.Generator,
                           device) -> torch.Tensor:
    """Poisson(lam) samples by inverting the CDF at uniforms through a guide table (Chen &
    Asau): a scalar rate per sample makes this a table look-up plus one exact correction
    step; the few uniforms whose table slot holds several CDF steps (the far tails) take a
    binary search. Several times faster than `torch.poisson` on CPU, and exact."""
    k = torch.arange(0, int(np.ceil(lam + 12 * np.sqrt(lam) + 10)), dtype=torch.float64)
    cdf = torch.cumsum(torch.exp(k * np.log(max(lam, 1e-12)) - lam - torch.lgamma(k + 1)), 0).float()
    last = int(torch.nonzero(cdf >= 1.0)[0]) if bool((cdf >= 1.0).any()) else len(cdf) - 1
    cdf = cdf[: last + 1].clone()
    cdf[-1] = 2.0  # float32 uniforms are < 1: nothing falls past this category
    slots = 64 * len(cdf)
    # guide[j]: the first category whose CDF exceeds j / slots; the answer for u in slot j
    # is guide[j] + (CDF steps inside the slot at or below u).
    edges = torch.arange(slots + 1, dtype=torch.float32) / slots
    guide = torch.searchsorted(cdf, edges, right=True)
    crowded = (guide[1:] - guide[:-1]) > 1
    cdf, guide, crowded = cdf.to(device), guide[:-1].to(device), crowded.to(device)
    u = torch.rand(shape, generator=generator, device=device).reshape(-1)
    slot = (u * slots).long().clamp_(max=slots - 1)
    out = torch.take(guide, slot)
    out += (torch.take(cdf, out) <= u).long()
    rare = torch.take(crowded, slot)
    if bool(rare.any()):
        out[rare] = torch.searchsorted(cdf, u[rare], right=True)
    return out.reshape(shape).to(torch.float32)


def make_noise(params: list[SampleParams], shape: tuple[int, int, int], sizes: list[int] | None,
               per_channel: bool, device, stream: int = 0) -> torch.Tensor:
    """Per-sample noise (0..255 units) from each sample's own generator, so a sample's noise
    does not depend on its batch. Valid region only; the rest of a canvas stays 0."""
    out = torch.zeros((len(params),) + shape, device=device)
    c, h, w = shape
    g = torch.Generator(device=device)
    for i, p in enumerate(params):
        m_h, m_w = (sizes[i], sizes[i]) if sizes else (h, w)
        g.manual_seed((p.noise_seed ^ stream) & (2**63 - 1))
        nshape = (c if per_channel else 1, m_h, m_w)
        view = out[i, :, :m_h, :m_w]
        if p.noise_kind == "gaussian":
            view.copy_(torch.randn(nshape, generator=g, device=device).mul_(p.noise_level))
        elif p.noise_kind == "laplace":
            u = torch.rand(nshape, generator=g, device=device).sub_(0.5)
            view.copy_(torch.sign(u).mul_(torch.log1p(u.abs().mul_(-2.0))).mul_(-p.noise_level))
        else:  # Poisson with a random sign (imgaug's AdditivePoissonNoise)
            mag = poisson_by_inverse_cdf(p.noise_level, nshape, g, device)
            sign = torch.randint(0, 2, nshape, generator=g, device=device).mul_(2).sub_(1)
            view.copy_(mag.mul_(sign))
    return out


def canvas_buckets(sizes: list[int], full: int, step: int = 32) -> dict[int, list[int]]:
    """Group sample indices by LR canvas side (sizes rounded up to `step`, at most `full`), so
    that a batch with mixed factors r does not pay for the largest canvas on every sample."""
    buckets: dict[int, list[int]] = {}
    for i, m in enumerate(sizes):
        buckets.setdefault(min(full, -(-m // step) * step), []).append(i)
    return buckets


class TorchBackend:
    """Batched torch implementation of a preset's full and single degradations."""

    name = "torch"

    def __init__(self, device: str | torch.device | None = None):
        self.device = torch.device(device) if device is not None else None

    def _blur(self, x: torch.Tensor, params: list[SampleParams], preset: Preset) -> torch.Tensor:
        gauss = [i for i, p in enumerate(params) if p.blur_kind == "gaussian"]
        motion = [i for i, p in enumerate(params) if p.blur_kind != "gaussian"]
        n = x.shape[-1]
        if not motion:
            return apply_rows(x, gaussian_matrices([p.blur_sigma for p in params], preset.blur.truncate, n, x.device))
        out = torch.empty_like(x)
        if gauss:
            gm = gaussian_matrices([params[i].blur_sigma for i in gauss], preset.blur.truncate, n, x.device)
            out[gauss] = apply_rows(x[gauss], gm)
        out[motion] = fft_blur(x[motion], [blur_kernel2d(params[i], preset.blur.truncate) for i in motion])
        return out

    def _step(self, op: str, x: torch.Tensor, params: list[SampleParams], preset: Preset,
              sizes: list[int] | None, stream: int = 0) -> torch.Tensor:
        """One non-resizing step on 0..255 images; `sizes` marks an edge-replicated LR canvas."""
        if op == "blur":
            if sizes is not None:
                x = fill_canvas(x, sizes)
            x = _quantize(self._blur(x, params, preset))
        elif op == "noise":
            noise = make_noise(params, tuple(x.shape[1:]), sizes, preset.noise.per_channel, x.device, stream)
            x = _quantize(x + noise)
        elif op == "jpeg":
            x = jpeg_roundtrip_255(x, torch.tensor([p.jpeg_quality for p in params], device=x.device))
        else:
            raise ValueError(f"unknown degradation step '{op}'")
        return fill_canvas(x, sizes) if sizes is not None and op != "jpeg" else x

    def run(self, hq: torch.Tensor, params: list[SampleParams], preset: Preset,
            singles: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = hq.to(self.device) if self.device is not None else hq
        x = x.float().mul(255.0)
        b, c, h, w = x.shape
        if h != w:
            raise ValueError(f"degradation expects square HQ images, got {h}x{w}")
        split = preset.order.index("down")
        cur = x
        for op in preset.order[:split]:  # full-resolution prefix, whole batch at once
            cur = self._step(op, cur, params, preset, None)
        blurred = cur if preset.order[0] == "blur" and split == 1 else None

        full = torch.empty_like(x)
        down_up = torch.empty_like(x) if singles else None
        lr_sizes = [p.lr_size(h) for p in params]
        for canvas, idx in canvas_buckets(lr_sizes, h).items():
            sub = [params[i] for i in idx]
            sizes = [lr_sizes[i] for i in idx]
            down = torch.stack([resize_matrix(h, m, preset.down.antialias, rows=canvas) for m in sizes]).to(x.device)
            up = torch.zeros(len(idx), h, canvas)
            for j, m in enumerate(sizes):
                up[j, :, :m] = resize_matrix(m, h, False)
            up = up.to(x.device)
            lr = _quantize(apply_rows(cur[idx], down))
            for op in preset.order[split + 1:]:
                lr = self._step(op, lr, sub, preset, sizes)
            full[idx] = _quantize(apply_rows(lr, up))
            if singles:  # the LR image is stored as uint8 before it is enlarged again
                down_up[idx] = _quantize(apply_rows(_quantize(apply_rows(x[idx], down)), up))
        if not singles:
            return full.div_(255.0), None
        if blurred is None:
            blurred = self._step("blur", x, params, preset, None)
        noisy = self._step("noise", x, params, preset, None, stream=SINGLE_NOISE_STREAM)
        jpeg = self._step("jpeg", x, params, preset, None)
        return full.div_(255.0), torch.stack([blurred, noisy, jpeg, down_up], 1).div_(255.0)
