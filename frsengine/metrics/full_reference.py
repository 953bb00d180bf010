"""Full-reference metrics — PSNR, SSIM, MS-SSIM — batched in torch, one value per image.

Conventions (docs/metrics.md has the details):

* inputs are (N, C, H, W) tensors with values in [0, ``data_range``], any real dtype, on any
  device; the arithmetic is float64, the result is a float64 tensor of shape (N,) on that device;
* RGB images are scored on all channels at once (PSNR: MSE over C, H and W; SSIM: mean over the
  channels of each channel's SSIM — what scikit-image with ``channel_axis`` and BasicSR do);
* ``y_channel=True`` scores the ITU-R BT.601 luma of RGB input, as BasicSR and MATLAB's
  ``rgb2ycbcr`` do: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for R, G, B in [0, 1], i.e. Y in
  [16, 235] compared on a 255 scale (so a value does not depend on ``data_range``);
* ``crop_border=b`` drops ``b`` pixels at each edge of H and W first (the SR convention);
* SSIM is Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  population (co)variances and no padding: the window only visits positions where it lies
  wholly inside the image — scikit-image's ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)`` and BasicSR's ``calculate_ssim``;
* MS-SSIM is pytorch-msssim's: 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
  2x2 average pooling between scales, negative terms clamped to 0, a Gaussian window of sigma 1.5
  and ``win_size`` 11 — which needs both sides above (11 - 1) * 2**4 = 160 px. Unless the caller
  passes ``win_size``, images whose smaller side is 160 px or less (128-px faces) are scored with
  a 7x7 window instead (pytorch-msssim's ``win_size=7``; needs sides above (7 - 1) * 16 = 96 px):
  :func:`ms_ssim_window` says which window a size gets, and a report should print it;
* the PSNR of identical images is +inf (as BasicSR and scikit-image return), not a capped value:
  an eval averaging PSNR should report such pairs rather than hide them.
"""
from __future__ import annotations

import functools
import math
import numbers

import torch
import torch.nn.functional as F

from frsengine.errors import FrsError

WIN_SIZE = 11
WIN_SIGMA = 1.5
MS_SSIM_SMALL_WIN_SIZE = 7  # the window MS-SSIM falls back to on images of 160 px or less
K1, K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# BT.601 luma for RGB in [0, 1], giving Y in [16, 235] (BasicSR's rgb2ycbcr, MATLAB's rgb2ycbcr).
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0


class MetricInputError(FrsError, ValueError):
    """Inputs a metric cannot score (shapes, dtypes, devices, sizes)."""


def psnr(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, crop_border: int = 0,
         y_channel: bool = False) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image pair: ``10 log10(range^2 / MSE)``, +inf
    where the images are identical. Returns (N,) float64."""
    x, y, rng = _prepare("psnr", x, y, data_range, crop_border, y_channel, min_side=1)
    mse = (x - y).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(rng * rng / mse)  # mse == 0 -> +inf


def ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, crop_border: int = 0,
         y_channel: bool = False) -> torch.Tensor:
    """Structural similarity of each image pair (mean over channels). Returns (N,) float64.
    H and W (after ``crop_border``) must be at least 11."""
    x, y, rng = _prepare("ssim", x, y, data_range, crop_border, y_channel, min_side=WIN_SIZE)
    ssim_map, _ = _ssim_maps(x, y, rng)
    return ssim_map.flatten(1).mean(1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0, y_channel: bool = False,
            win_size: int | None = None) -> torch.Tensor:
    """Multi-scale SSIM of each image pair (pytorch-msssim's definition, mean over channels).
    Returns (N,) float64.

    ``win_size`` (odd) is the side of the Gaussian window (sigma 1.5). The window must still fit
    after 4 halvings, so H and W must exceed ``(win_size - 1) * 16``. ``None`` (the default) means
    11, pytorch-msssim's default, where both sides exceed 160 px, and 7 where the smaller side is
    160 px or less (``ms_ssim_window(H, W)``); sides of 96 px or less are refused."""
    x, y, rng = _prepare("ms_ssim", x, y, data_range, 0, y_channel, min_side=1)
    h, w = x.shape[2], x.shape[3]
    if win_size is None:
        win = _auto_window(min(h, w))
        why = "the smallest window ms_ssim picks by itself"
    else:
        win = _check_win_size("ms_ssim", win_size)
        why = f"win_size={win}"
    need = ms_ssim_min_side(win)
    if min(h, w) < need:
        raise MetricInputError(
            f"ms_ssim: needs images at least {need}x{need} px for 5 scales with a {win}x{win} window "
            f"({why}; the window must fit after 4 halvings), got {tuple(x.shape)}: use larger images"
            + (" or a smaller odd win_size" if win_size is not None and win > 1 else ""))
    terms = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        ssim_map, cs_map = _ssim_maps(x, y, rng, win)
        if level < len(MS_SSIM_WEIGHTS) - 1:
            terms.append(cs_map.flatten(2).mean(2).clamp_min(0))
            # Odd sides are padded by one (counted as zeros), exactly as pytorch-msssim pools.
            pad = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
    terms.append(ssim_map.flatten(2).mean(2).clamp_min(0))
    weights = x.new_tensor(MS_SSIM_WEIGHTS).view(-1, 1, 1)
    return torch.stack(terms).pow(weights).prod(0).mean(1)  # (level, N, C) -> (N,)


def ms_ssim_min_side(win_size: int = WIN_SIZE) -> int:
    """The smallest side MS-SSIM accepts with this window: ``(win_size - 1) * 2**4 + 1``."""
    return (int(win_size) - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def ms_ssim_window(height: int, width: int) -> int:
    """The side of the Gaussian window :func:`ms_ssim` uses on height x width images when no
    ``win_size`` is given: 11 where both sides exceed 160 px, 7 where the smaller side is 97 to 160 px
    (128-px faces). Raises :class:`MetricInputError` for sides of 96 px or less, which no window
    of the rule fits."""
    for label, v in (("height", height), ("width", width)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise MetricInputError(f"ms_ssim_window: {label} must be a positive integer, got {v!r}")
    side = min(int(height), int(width))
    win = _auto_window(side)
    need = ms_ssim_min_side(win)
    if side < need:
        raise MetricInputError(
            f"ms_ssim: needs images at least {need}x{need} px for 5 scales with a {win}x{win} window "
            f"(the smallest window ms_ssim picks by itself), got {int(height)}x{int(width)}: use larger images")
    return win


def _auto_window(side: int) -> int:
    """11 where the smaller side exceeds 160 px, else 7 (which may not fit either: callers check)."""
    return WIN_SIZE if side >= ms_ssim_min_side(WIN_SIZE) else MS_SSIM_SMALL_WIN_SIZE


def _check_win_size(name: str, win_size) -> int:
    if not isinstance(win_size, numbers.Integral) or isinstance(win_size, bool) or win_size < 1 \
            or win_size % 2 == 0:
        raise MetricInputError(f"{name}: win_size must be an odd positive integer (11, or 7 for "
                               f"images of 97 to 160 px), got {win_size!r}")
    return int(win_size)


def rgb_to_y(rgb: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """BT.601 luma of (N, 3, H, W) RGB in [0, ``data_range``], as (N, 1, H, W) in [16, 235]."""
    w = rgb.new_tensor(_Y_WEIGHTS).view(1, 3, 1, 1) / data_range
    return (rgb * w).sum(1, keepdim=True) + _Y_OFFSET


def _ssim_maps(x: torch.Tensor, y: torch.Tensor, rng: float,
               win: int = WIN_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure maps over the valid positions of a win x win Gaussian window,
    (N, C, H - win + 1, W - win + 1)."""
    c1, c2 = (K1 * rng) ** 2, (K2 * rng) ** 2
    n = x.shape[0]
    # One filter pass over the five moments: x, y, x^2, y^2, xy stacked along channels.
    stats = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), win)
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.view(n, 5, -1, *stats.shape[2:]).unbind(1)
    var_x, var_y = e_xx - mu_x * mu_x, e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs
    return ssim_map, cs


def _blur(t: torch.Tensor, win: int = WIN_SIZE) -> torch.Tensor:
    """Separable win x win Gaussian filter (sigma 1.5), valid positions only (no padding)."""
    c = t.shape[1]
    g = _gauss_1d(win, t.device).to(t.dtype)
    t = F.conv2d(t, g.view(1, 1, 1, -1).expand(c, 1, 1, win), groups=c)
    return F.conv2d(t, g.view(1, 1, -1, 1).expand(c, 1, win, 1), groups=c)


@functools.lru_cache(maxsize=16)
def _gauss_1d(win: int, device: torch.device) -> torch.Tensor:
    r = torch.arange(win, dtype=torch.float64, device=device) - win // 2
    g = torch.exp(-r * r / (2 * WIN_SIGMA ** 2))
    return g / g.sum()


def _prepare(name: str, x, y, data_range: float, crop_border: int, y_channel: bool,
             min_side: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Checked, cropped float64 inputs (luma if asked) and the range to score them against."""
    for label, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise MetricInputError(f"{name}: {label} must be a torch.Tensor (N, C, H, W), got "
                                   f"{type(t).__name__}: convert with torch.as_tensor(...)")
        if t.dtype == torch.bool or t.is_complex():
            raise MetricInputError(f"{name}: {label} has dtype {t.dtype}: pass real-valued images "
                                   "(float in [0, data_range] or uint8 with data_range=255)")
    if x.dim() != 4 or x.shape != y.shape:
        raise MetricInputError(f"{name}: x and y must both be (N, C, H, W) of one shape, got "
                               f"{tuple(x.shape)} and {tuple(y.shape)}: add a batch axis with "
                               "unsqueeze(0) or resize one side")
    if x.device != y.device:
        raise MetricInputError(f"{name}: x is on {x.device} but y on {y.device}: move both to one device")
    if not (isinstance(data_range, numbers.Real) and math.isfinite(data_range) and data_range > 0):
        raise MetricInputError(f"{name}: data_range must be a positive number (1.0 for [0, 1], "
                               f"255 for [0, 255]), got {data_range!r}")
    if not isinstance(crop_border, numbers.Integral) or crop_border < 0:
        raise MetricInputError(f"{name}: crop_border must be an integer >= 0, got {crop_border!r}")
    if y_channel and x.shape[1] != 3:
        raise MetricInputError(f"{name}: y_channel=True needs RGB input (C = 3), got C = {x.shape[1]}")
    b = int(crop_border)
    h, w = x.shape[2] - 2 * b, x.shape[3] - 2 * b
    if min(h, w) < min_side or x.shape[0] == 0 or x.shape[1] == 0:
        raise MetricInputError(f"{name}: needs a non-empty batch of images at least {min_side}x{min_side}"
                               f" px after crop_border={b}, got {tuple(x.shape)}: use larger images"
                               + (" or a smaller crop_border" if b else ""))
    x, y = (t[..., b:b + h, b:b + w].to(torch.float64) for t in (x, y))
    if y_channel:
        # Luma on the 255 scale, scored against 255: BasicSR's and MATLAB's convention.
        return rgb_to_y(x, data_range), rgb_to_y(y, data_range), 255.0
    return x, y, float(data_range)
