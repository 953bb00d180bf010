import numpy as np
import pytest
import torch


def synthetic_faces(n: int, size: int = 128, seed: int = 0) -> torch.Tensor:
    """(n,3,size,size) uint8 images with smooth shading, edges and fine texture: enough
    structure for every degradation to have something to destroy."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        base = 60 + 120 * rng.random(3)[:, None, None] * (0.6 + 0.4 * np.sin(2 * np.pi * (xx * rng.random() + yy)))
        cx, cy, r = rng.uniform(0.3, 0.7, 2).tolist() + [rng.uniform(0.15, 0.3)]
        disk = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        img = base + 50 * disk[None] * rng.choice([-1, 1])
        img += 12 * np.sin(2 * np.pi * 20 * xx)[None] * np.sin(2 * np.pi * 17 * yy)[None]
        out.append(np.clip(img, 0, 255))
    return torch.from_numpy(np.stack(out).round().astype(np.uint8))


@pytest.fixture(scope="session")
def faces() -> torch.Tensor:
    return synthetic_faces(8)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of float images in [0,1], shape (B,...)."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp(min=1e-12)
    return 10 * torch.log10(1.0 / mse)
