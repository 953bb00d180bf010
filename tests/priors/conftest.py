from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
UTK = DATA / "faces-hq" / "utkface-aligned"


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny shapes, and a 2-core machine shared with others: one thread, seeded.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def template_landmarks(size: int = 128) -> np.ndarray:
    """A synthetic, left-right symmetric (x -> size - x) 68-point face in a size x size frame
    (designed at 128 and scaled)."""
    p = np.zeros((68, 2), np.float64)
    t = np.linspace(0, 1, 17)
    a = np.pi - t * np.pi
    p[0:17] = np.stack([64 + 44 * np.cos(a), 60 + 56 * np.sin(a)], 1)
    bx = np.linspace(30, 56, 5)
    p[17:22] = np.stack([bx, 40 - 4 * np.sin(np.linspace(0.3, 2.8, 5))], 1)
    p[22:27] = np.stack([128 - bx[::-1], p[17:22, 1][::-1]], 1)
    p[27:31] = [[64, 48], [64, 55], [64, 62], [64, 69]]
    p[31:36] = [[56, 76], [60, 78], [64, 79], [68, 78], [72, 76]]
    ang = np.deg2rad([180, 120, 60, 0, -60, -120])
    p[36:42] = np.stack([44 + 9 * np.cos(ang), 52 - 4 * np.sin(ang)], 1)
    ang_r = np.deg2rad([180, 120, 60, 0, -60, -120])
    p[42:48] = np.stack([84 + 9 * np.cos(ang_r), 52 - 4 * np.sin(ang_r)], 1)
    outer = np.deg2rad([180, 150, 120, 90, 60, 30, 0, -30, -60, -90, -120, -150])
    p[48:60] = np.stack([64 + 16 * np.cos(outer), 95 - 7 * np.sin(outer)], 1)
    inner = np.deg2rad([180, 135, 90, 45, 0, -45, -90, -135])
    p[60:68] = np.stack([64 + 12 * np.cos(inner), 95 - 2 * np.sin(inner)], 1)
    return (p * size / 128).astype(np.float32)


def shoelace(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
