"""Per-sample degradation parameters, drawn from a seeded generator.

Each sample has its own generator, `numpy.random.default_rng([seed, epoch, index])`, so its
parameters (and its noise, through `noise_seed`) do not depend on batch size, worker count
or backend: the same seed gives the same parameters everywhere.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from frsengine.degrade.presets import Preset, Range

# Generator stream of the noise-only single: its noise differs from the full degradation's.
SINGLE_NOISE_STREAM = 0x5EED


@dataclass(frozen=True)
class SampleParams:
    """The parameters of one sample's full degradation; the single degradations reuse them,
    so that Eq. 7's Z_full ~ Z_blur + Z_noise + Z_lr + Z_jpeg holds per face."""

    blur_kind: str  # "gaussian" | "motion"
    blur_sigma: float  # Gaussian sigma (pixels); 0 for motion blur
    motion_size: int  # motion line length (pixels); 0 for Gaussian blur
    motion_angle: float  # degrees
    scale: float  # down-sampling factor r >= 1
    noise_kind: str  # "gaussian" | "laplace" | "poisson"
    noise_level: float  # sigma / Laplace scale (0-255 units) / Poisson lambda
    jpeg_quality: int  # 1..100
    noise_seed: int  # seeds the backend's noise generator

    def lr_size(self, size: int) -> int:
        """Side of the down-sampled image for an HQ side of `size`."""
        return max(1, int(round(size / self.scale)))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> "SampleParams":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(record)
        if missing:
            raise ValueError(f"degradation parameters lack {sorted(missing)}")
        return cls(**{k: record[k] for k in names})


def _uniform(rng: np.random.Generator, r: Range) -> float:
    return float(r.lo) if r.lo == r.hi else float(rng.uniform(r.lo, r.hi))


def draw_params(preset: Preset, rng: np.random.Generator) -> SampleParams:
    """Draw one sample's parameters from `preset`'s ranges."""
    gaussian = rng.random() < preset.blur.gaussian_p
    sigma = _uniform(rng, preset.blur.sigma) if gaussian else 0.0
    motion = int(rng.integers(int(preset.blur.motion_size.lo), int(preset.blur.motion_size.hi) + 1))
    angle = float(rng.uniform(0.0, 360.0))
    scale = _uniform(rng, preset.down.scale)
    kinds, probs = zip(*preset.noise.kinds)
    kind = kinds[int(rng.choice(len(kinds), p=np.asarray(probs) / sum(probs)))]
    level_range = {"gaussian": preset.noise.sigma, "laplace": preset.noise.laplace_scale,
                   "poisson": preset.noise.poisson_lam}[kind]
    level = _uniform(rng, level_range)
    quality = int(rng.integers(int(preset.jpeg.quality.lo), int(preset.jpeg.quality.hi) + 1))
    noise_seed = int(rng.integers(0, 2**62))
    return SampleParams(
        blur_kind="gaussian" if gaussian else "motion",
        blur_sigma=sigma,
        motion_size=0 if gaussian else motion,
        motion_angle=0.0 if gaussian else angle,
        scale=scale,
        noise_kind=kind,
        noise_level=level,
        jpeg_quality=quality,
        noise_seed=noise_seed,
    )


def sample_params(preset: Preset, seed: int, indices: Sequence[int], epoch: int = 0) -> list[SampleParams]:
    """Parameters for the samples `indices` of epoch `epoch` under base seed `seed`."""
    return [draw_params(preset, np.random.default_rng([seed, epoch, int(i)])) for i in indices]


def gaussian_kernel1d(sigma: float, truncate: float) -> np.ndarray:
    """Normalised 1-D Gaussian of radius ceil(truncate * sigma) (at least 1)."""
    radius = max(1, int(np.ceil(truncate * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    return k / k.sum()


def motion_kernel(size: int, angle_deg: float) -> np.ndarray:
    """A normalised line of length `size` through the centre of an odd square kernel,
    rasterised with bilinear splatting so that every angle has the same energy."""
    ksize = size if size % 2 == 1 else size + 1
    c = ksize // 2
    k = np.zeros((ksize, ksize), dtype=np.float64)
    theta = np.deg2rad(angle_deg)
    # Sub-pixel steps along the line; the splat keeps the kernel smooth under rotation.
    t = np.linspace(-(size - 1) / 2.0, (size - 1) / 2.0, 8 * size)
    xs, ys = c + t * np.cos(theta), c - t * np.sin(theta)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                      (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = np.clip(x0 + dx, 0, ksize - 1), np.clip(y0 + dy, 0, ksize - 1)
        np.add.at(k, (yi, xi), w)
    return k / k.sum()


def blur_kernel2d(p: SampleParams, truncate: float) -> np.ndarray:
    """The 2-D blur kernel of one sample (odd square, sums to 1)."""
    if p.blur_kind == "gaussian":
        g = gaussian_kernel1d(p.blur_sigma, truncate)
        return np.outer(g, g)
    return motion_kernel(p.motion_size, p.motion_angle)


def numpy_noise(p: SampleParams, shape: tuple[int, int], per_channel: bool, stream: int = 0) -> np.ndarray:
    """(H, W, 3 or 1) float64 noise in 0-255 units from numpy's PCG64 seeded with the
    sample's `noise_seed` (the per-image backends' draws; the torch backend has its own)."""
    rng = np.random.default_rng((p.noise_seed ^ stream) & (2**63 - 1))
    shape = tuple(shape) + ((3,) if per_channel else (1,))
    if p.noise_kind == "gaussian":
        return rng.normal(0.0, p.noise_level, shape)
    if p.noise_kind == "laplace":
        return rng.laplace(0.0, p.noise_level, shape)
    # Poisson magnitude with a random sign (imgaug's AdditivePoissonNoise)
    return rng.poisson(p.noise_level, shape) * rng.choice((-1.0, 1.0), shape)
