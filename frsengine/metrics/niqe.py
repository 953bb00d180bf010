"""NIQE (Mittal, Soundararajan & Bovik 2013), a no-reference score fitted here on clean faces.

An image's luma is normalised into MSCN coefficients ``(I - mu) / (sigma + 1)`` (7x7 Gaussian
window, sigma 7/6, replicated border), cut into square patches, and each patch described by 18
numbers: an asymmetric generalised Gaussian (AGGD) fit of the coefficients (shape, mean scale) and
of their products with the 4 neighbours right, below and on both diagonals (shape, mean, left and
right scale each). The same at half resolution gives 36 features per patch. A model is the mean and
covariance of the features of the sharpest patches (mean local sigma above 0.75 of the image's
sharpest) of many clean images; an image's score is

    sqrt((mu_model - mu_img)^T pinv((cov_model + cov_img) / 2) (mu_model - mu_img))

over all of its patches — lower is more natural. The arithmetic follows the authors' MATLAB code
(and BasicSR's port of it), with two choices of ours, recorded in the model file: the luma is
BT.601 Y on the 255 scale (``rgb_to_y``, as BasicSR), and the patch side defaults to 32 px instead of
96, because the engine's faces are 128 px: 96 px patches would give one patch per image, whose
covariance is undefined, while 32 px gives 16 patches (16 px at the half scale) covering the face.
Patches whose features are not finite (flat patches: no negative or no positive coefficients) are
left out, as the reference drops NaN rows.
"""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from frsengine.errors import FrsError
from frsengine.metrics.full_reference import MetricInputError, rgb_to_y

PATCH_SIZE = 32
SHARPNESS_THRESHOLD = 0.75
N_FEATURES = 36
_FORMAT = "frsengine-niqe"
_VERSION = 1
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@dataclass
class NIQEModel:
    """A fitted multivariate Gaussian of natural-patch features."""

    mean: torch.Tensor                  # (36,) float64
    cov: torch.Tensor                   # (36, 36) float64
    patch_size: int = PATCH_SIZE
    sharpness_threshold: float = SHARPNESS_THRESHOLD
    n_images: int = 0
    n_patches: int = 0
    info: dict = field(default_factory=dict)   # where it was fitted from (free-form, JSON-able)

    def save(self, path: str | os.PathLike) -> Path:
        """Write as safetensors (tensors ``mean``, ``cov``; the rest as JSON metadata)."""
        from safetensors.torch import save_file

        path = Path(path)
        meta = {"format": _FORMAT, "version": _VERSION, "patch_size": self.patch_size,
                "sharpness_threshold": self.sharpness_threshold, "n_images": self.n_images,
                "n_patches": self.n_patches, "info": self.info}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"mean": self.mean.double().contiguous().cpu(), "cov": self.cov.double().contiguous().cpu()},
                  str(path), metadata={"niqe": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NIQEModel":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FrsError(f"NIQE model '{path}' does not exist: fit one with fit_niqe_from_folder(...).save(path)")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("niqe", "{}"))
                mean, cov = f.get_tensor("mean"), f.get_tensor("cov")
        except Exception as exc:  # safetensors raises several types for foreign or broken files
            raise FrsError(f"'{path}' is not a NIQE model file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): "
                           "refit it with fit_niqe_from_folder(...).save(path)") from None
        if meta.get("format") != _FORMAT or meta.get("version") != _VERSION \
                or mean.shape != (N_FEATURES,) or cov.shape != (N_FEATURES, N_FEATURES):
            raise FrsError(f"'{path}' is not a version-{_VERSION} NIQE model of this engine: refit it with "
                           "fit_niqe_from_folder(...).save(path)")
        return cls(mean, cov, int(meta["patch_size"]), float(meta["sharpness_threshold"]),
                   int(meta["n_images"]), int(meta["n_patches"]), meta.get("info", {}))


def niqe(images: torch.Tensor, model: NIQEModel) -> torch.Tensor:
    """NIQE of each (N, C, H, W) image in [0, 1] (C = 3: RGB, scored on its luma; C = 1: luma
    in [0, 1]). Returns (N,) float64; NaN for an image with no usable patch (e.g. flat)."""
    feats, _ = patch_features(images, model.patch_size)               # (N, P, 36)
    ok = torch.isfinite(feats).all(-1)                                # (N, P)
    mu, cov = _masked_mean_cov(feats, ok)
    diff = (model.mean.to(mu) - mu).unsqueeze(-1)                     # (N, 36, 1)
    inv = torch.linalg.pinv((model.cov.to(cov) + cov) / 2)
    score = (diff.transpose(1, 2) @ inv @ diff).flatten().clamp_min(0).sqrt()
    return torch.where(ok.any(1), score, torch.full_like(score, math.nan))


def fit_niqe(images, *, patch_size: int = PATCH_SIZE, sharpness_threshold: float = SHARPNESS_THRESHOLD,
             info: dict | None = None) -> NIQEModel:
    """Fit a model on clean images: an (N, C, H, W) tensor in [0, 1], or an iterable of such
    batches (to stream a folder). Only each image's sharpest patches count (see module doc)."""
    batches = [images] if isinstance(images, torch.Tensor) else images
    kept, n_images = [], 0
    for batch in batches:
        feats, sharp = patch_features(batch, patch_size)
        select = sharp > sharpness_threshold * sharp.amax(1, keepdim=True)
        select &= torch.isfinite(feats).all(-1)
        kept.append(feats[select].cpu())
        n_images += feats.shape[0]
    rows = torch.cat(kept) if kept else torch.zeros(0, N_FEATURES, dtype=torch.float64)
    if rows.shape[0] <= N_FEATURES:
        raise FrsError(f"fit_niqe: only {rows.shape[0]} usable patches from {n_images} images (need more "
                       f"than {N_FEATURES}): fit on more, or larger, non-flat images")
    return NIQEModel(rows.mean(0), torch.cov(rows.T), patch_size, sharpness_threshold, n_images,
                     rows.shape[0], dict(info or {}))


def fit_niqe_from_folder(folder: str | os.PathLike, list_file: str | os.PathLike | None = None,
                         limit: int | None = 2000, size: int = 128, *, patch_size: int = PATCH_SIZE,
                         batch_size: int = 64, num_workers: int = 0) -> NIQEModel:
    """Fit on the faces of ``folder`` (or those ``list_file`` names), centre-cropped and resized
    to ``size``. With ``limit``, ``limit`` faces evenly spaced through the (sorted or listed)
    files are used — file names are often ordered by a label (UTKFace: age), so the first
    ``limit`` would be a biased sample. Unreadable files are skipped with a warning."""
    from torch.utils.data import DataLoader, Subset

    from frsengine.data import FaceFolder

    data = FaceFolder(folder, size, list_file=list_file)
    n = len(data)
    if limit is not None and limit < n:
        data = Subset(data, torch.linspace(0, n - 1, limit).round().long().unique().tolist())
    loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_collate_float)
    info = {"folder": str(folder), "list_file": None if list_file is None else str(list_file),
            "limit": limit, "size": size, "files": len(data)}
    return fit_niqe(loader, patch_size=patch_size, info=info)


def _collate_float(samples) -> torch.Tensor:
    return torch.stack([img for img, _ in samples]).float().div(255)


def patch_features(images: torch.Tensor, patch_size: int = PATCH_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, P, 36) NIQE features of each image's P patches (row-major grid; the image is cut to a
    multiple of ``patch_size``) and (N, P) patch sharpness (mean local sigma at full scale)."""
    lum = _luma(images, patch_size)
    feats, sharp = [], None
    for scale in (1, 2):
        mscn, sigma = _mscn(lum)
        p = patch_size // scale
        feats.append(_patch_stats(_patches(mscn, p)))
        if scale == 1:
            sharp = _patches(sigma, p).mean((-1, -2))
            # Half resolution as MATLAB's imresize(0.5): bicubic with an antialiasing kernel.
            lum = F.interpolate(lum / 255, scale_factor=0.5, mode="bicubic", antialias=True,
                                align_corners=False) * 255
    return torch.cat(feats, -1), sharp


def _luma(images, patch_size: int) -> torch.Tensor:
    """(N, 1, H', W') float64 luma on the 255 scale, H' and W' cut to multiples of the patch."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3) \
            or not images.is_floating_point():
        raise MetricInputError(f"niqe: needs float images (N, 3 or 1, H, W) in [0, 1], got "
                               f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if patch_size < 8 or patch_size % 2:
        raise MetricInputError(f"niqe: patch_size must be even and at least 8, got {patch_size}")
    h, w = (s // patch_size * patch_size for s in images.shape[2:])
    if h == 0 or w == 0:
        raise MetricInputError(f"niqe: images of {images.shape[2]}x{images.shape[3]} px hold no "
                               f"{patch_size} px patch: use larger images or a smaller patch_size")
    x = images[:, :, :h, :w].double()
    return rgb_to_y(x) if x.shape[1] == 3 else x * 255


def _mscn(lum: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MSCN coefficients and local sigma, 7x7 Gaussian (sigma 7/6), replicated border."""
    g = _gauss_7(lum.device)
    # The Gaussian is separable: a row then a column pass, over I and I^2 at once.
    both = F.pad(torch.cat([lum, lum * lum], 1), (3, 3, 3, 3), mode="replicate")
    both = F.conv2d(F.conv2d(both, g.view(1, 1, 1, 7).expand(2, 1, 1, 7), groups=2),
                    g.view(1, 1, 7, 1).expand(2, 1, 7, 1), groups=2)
    mu, mean_sq = both[:, :1], both[:, 1:]
    sigma = (mean_sq - mu * mu).abs().sqrt()
    return (lum - mu) / (sigma + 1), sigma


@functools.lru_cache(maxsize=8)
def _gauss_7(device: torch.device) -> torch.Tensor:
    r = torch.arange(7, dtype=torch.float64, device=device) - 3
    g = torch.exp(-r * r / (2 * (7 / 6) ** 2))
    return g / g.sum()


def _patches(t: torch.Tensor, p: int) -> torch.Tensor:
    """(N, 1, H, W) -> (N, P, p, p), patches in row-major order."""
    n, _, h, w = t.shape
    return t.view(n, h // p, p, w // p, p).permute(0, 1, 3, 2, 4).reshape(n, -1, p, p)


def _patch_stats(block: torch.Tensor) -> torch.Tensor:
    """The 18 features of each patch of (..., p, p) MSCN coefficients (MATLAB's computefeature;
    neighbours wrap around inside the patch, as its circshift does)."""
    alpha, bl, br = _aggd(block)
    out = [alpha, (bl + br) / 2]
    for shift in _SHIFTS:
        alpha, bl, br = _aggd(block * torch.roll(block, shift, dims=(-2, -1)))
        mean = (br - bl) * torch.exp(torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha))
        out += [alpha, mean, bl, br]
    return torch.stack(out, -1)


def _aggd(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Moment-matching AGGD fit (shape alpha, left and right scale) of each (..., p, p) block;
    alpha is looked up on MATLAB's grid 0.2:0.001:10. NaN where a side has no samples."""
    x = block.flatten(-2)
    sq = x * x
    left = ((sq * (x < 0)).sum(-1) / (x < 0).sum(-1)).sqrt()
    right = ((sq * (x > 0)).sum(-1) / (x > 0).sum(-1)).sqrt()
    g = left / right
    rhat = x.abs().mean(-1) ** 2 / sq.mean(-1)
    rhat_norm = rhat * (g ** 3 + 1) * (g + 1) / (g * g + 1) ** 2
    grid, r_grid = _alpha_grid(x.device)
    # r_grid rises monotonically, so the nearest grid value is one of the two neighbours.
    i = torch.searchsorted(r_grid, rhat_norm.nan_to_num(0).contiguous()).clamp(1, len(grid) - 1)
    i = torch.where((r_grid[i - 1] - rhat_norm).abs() <= (r_grid[i] - rhat_norm).abs(), i - 1, i)
    alpha = torch.where(torch.isfinite(rhat_norm), grid[i], torch.full_like(rhat_norm, math.nan))
    scale = torch.exp((torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)) / 2)
    return alpha, left * scale, right * scale


@functools.lru_cache(maxsize=8)
def _alpha_grid(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    grid = torch.arange(9801, dtype=torch.float64, device=device) * 0.001 + 0.2
    r = torch.exp(2 * torch.lgamma(2 / grid) - torch.lgamma(1 / grid) - torch.lgamma(3 / grid))
    return grid, r


def _masked_mean_cov(feats: torch.Tensor, ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean (N, 36) and sample covariance (N, 36, 36) over the rows ``ok`` marks;
    a zero covariance where fewer than two rows are usable."""
    m = ok.unsqueeze(-1).to(feats.dtype)
    f = torch.where(ok.unsqueeze(-1), feats, torch.zeros_like(feats))
    cnt = m.sum(1)                                                    # (N, 1)
    mu = f.sum(1) / cnt.clamp_min(1)
    c = (f - mu.unsqueeze(1)) * m
    cov = c.transpose(1, 2) @ c / (cnt - 1).clamp_min(1).unsqueeze(-1)
    return mu, cov
