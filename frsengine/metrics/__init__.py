"""Image-quality metrics for restored faces.

Full-reference metrics take (N, C, H, W) tensors in [0, data_range] and return one float64
value per image, shape (N,). :data:`METRICS` maps each name an eval reports to such a
function of (restored, ground_truth) at data_range 1; :data:`HIGHER_IS_BETTER` says which way
each one improves.
"""
from __future__ import annotations

import functools

from frsengine.metrics.full_reference import MetricInputError, ms_ssim, psnr, rgb_to_y, ssim

METRICS = {
    "psnr": psnr,
    "ssim": ssim,
    "ms_ssim": ms_ssim,
    "psnr_y": functools.partial(psnr, y_channel=True),
    "ssim_y": functools.partial(ssim, y_channel=True),
}
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ms_ssim": True, "psnr_y": True, "ssim_y": True}

__all__ = ["HIGHER_IS_BETTER", "METRICS", "MetricInputError", "ms_ssim", "psnr", "rgb_to_y", "ssim"]
