"""Image-quality metrics for restored faces (definitions and conventions: docs/metrics.md).

Full reference, batched torch, one float64 value per image, (N,) — frsengine.metrics.full_reference:
    psnr(x, y, *, data_range=1.0, crop_border=0, y_channel=False)
    ssim(x, y, *, data_range=1.0, crop_border=0, y_channel=False)
    ms_ssim(x, y, *, data_range=1.0, y_channel=False, win_size=None)  (None: 11, or 7 at <= 160 px)
    ms_ssim_window(height, width) -> the window ms_ssim picks for that size (11 or 7)
Identity (dlib descriptor distance) — frsengine.metrics.identity:
    identity_distance(restored, ground_truth) -> IdentityResult(distance, fallback)
No reference — frsengine.metrics.niqe:
    fit_niqe(images) / fit_niqe_from_folder(folder, list_file, limit, size) -> NIQEModel
    niqe(images, model) -> (N,)
With user-supplied weights — frsengine.metrics.lpips / frsengine.metrics.fid:
    lpips(x, y, *, weights=None) -> (N,)  (weights: a file, or $FRSENGINE_LPIPS_WEIGHTS)
    frechet_distance(mu1, s1, mu2, s2), fid_from_features(f1, f2) -> float

``niqe`` and ``lpips`` are imported from their modules (``from frsengine.metrics.niqe import niqe``):
a package attribute of the same name would hide the module. :data:`METRICS` maps each
full-reference name an eval reports to a function of (restored, ground_truth) at data_range 1,
and :data:`HIGHER_IS_BETTER` says which way each improves.
"""
from __future__ import annotations

import functools

from frsengine.metrics.fid import feature_stats, fid_from_features, frechet_distance
from frsengine.metrics.full_reference import MetricInputError, ms_ssim, ms_ssim_window, psnr, rgb_to_y, ssim
from frsengine.metrics.identity import IdentityResult, face_descriptors, identity_distance
from frsengine.metrics.lpips import LPIPS
from frsengine.metrics.niqe import NIQEModel, fit_niqe, fit_niqe_from_folder

METRICS = {
    "psnr": psnr,
    "ssim": ssim,
    "ms_ssim": ms_ssim,
    "psnr_y": functools.partial(psnr, y_channel=True),
    "ssim_y": functools.partial(ssim, y_channel=True),
}
HIGHER_IS_BETTER = {
    "psnr": True, "ssim": True, "ms_ssim": True, "psnr_y": True, "ssim_y": True,
    # Metrics outside the registry (they need a model or weights), for reports that list them too.
    "identity": False, "niqe": False, "lpips": False, "fid": False,
}

__all__ = [
    "HIGHER_IS_BETTER", "IdentityResult", "LPIPS", "METRICS", "MetricInputError", "NIQEModel",
    "face_descriptors", "feature_stats", "fid_from_features", "fit_niqe", "fit_niqe_from_folder",
    "frechet_distance", "identity_distance", "ms_ssim", "ms_ssim_window", "psnr", "rgb_to_y", "ssim",
]
