"""FID: the Fréchet distance between Gaussians fitted to two sets of image features.

    d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

computed as pytorch-fid does: float64, ``scipy.linalg.sqrtm``, a small diagonal offset when the
product is singular, and the imaginary part of the root dropped when it is numerical noise. The
standard features are InceptionV3's 2048-d pool features; frsengine cannot download those weights,
and does not define the InceptionV3 network yet either: extract features with a tool that has them
(pytorch-fid, clean-fid) and pass them to :func:`fid_from_features`. :func:`inception_weights_path`
is the hook a future extractor resolves its ``$FRSENGINE_FID_WEIGHTS`` file through.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from frsengine.errors import FrsError
from frsengine.metrics.weights import user_weights
from frsengine.metrics.full_reference import MetricInputError

ENV_VAR = "FRSENGINE_FID_WEIGHTS"


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and sample covariance (D, D) of (N, D) features (numpy or torch), float64."""
    f = _as_2d(features, "features")
    if f.shape[0] < 2:
        raise MetricInputError(f"fid: need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (pytorch-fid's recipe)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise MetricInputError(f"frechet_distance: means must be (D,) and covariances (D, D) of one D, got "
                               f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Singular product (e.g. fewer samples than dimensions): regularise both covariances.
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise FrsError(f"frechet_distance: the covariance product's square root has a large imaginary "
                           f"part ({np.abs(covmean.imag).max():.3g}): use more feature vectors than dimensions")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(features1, features2) -> float:
    """FID between two (N, D) feature sets (e.g. InceptionV3 pool features of real and restored faces)."""
    return frechet_distance(*feature_stats(features1), *feature_stats(features2))


def inception_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The InceptionV3 weights file: ``path``, else ``$FRSENGINE_FID_WEIGHTS``; a clear error if neither."""
    return user_weights(path, ENV_VAR, "FID", f"FID needs InceptionV3 weights, which frsengine cannot download: pass "
                        f"weights=PATH or set {ENV_VAR} to a .safetensors file, or compute features elsewhere "
                        "and call fid_from_features (docs/metrics.md)")


def load_inception(path: str | os.PathLike | None = None):
    """The FID feature extractor. Resolves the weights file (so a missing one is reported first),
    then says that the network itself is not in this version."""
    path = inception_weights_path(path)
    raise FrsError(f"frsengine does not define the InceptionV3 network yet, so '{path}' cannot be used: "
                   "extract 2048-d pool features with pytorch-fid and call fid_from_features")


def _as_2d(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise MetricInputError(f"fid: {name} must be (N, D), got shape {a.shape}")
    return a
