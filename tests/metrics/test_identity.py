"""dlib identity distance: known cases on synthetic crops, and the chip path on real faces."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from frsengine.errors import FrsError
from frsengine.metrics import MetricInputError
from frsengine.metrics.identity import face_descriptors, identity_distance

try:
    from frsengine.face.dlib_models import face_descriptor_model
    face_descriptor_model()
except (ImportError, FrsError) as exc:  # no dlib wheel or no face-recognition-models
    pytest.skip(f"dlib face descriptor unavailable: {exc}", allow_module_level=True)

FACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces-hq" / "utkface-aligned"


def _smooth(n, seed):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(128, 128), mode="bicubic").clamp(0, 1)


def test_identical_zero_different_positive():
    a, b = _smooth(2, 0), _smooth(2, 1)
    same = identity_distance(a, a)
    assert same.distance.shape == (2,) and same.distance.dtype == torch.float64
    assert torch.all(same.distance.abs() < 1e-6)
    # No face in a random field: both sides fell back to the whole crop, and say so.
    assert same.fallback.shape == (2, 2) and same.fallbacks == 4
    diff = identity_distance(a, b)
    assert torch.all(diff.distance > 0.01)


def test_descriptors_shape_and_determinism():
    x = _smooth(3, 2)
    d1, f1 = face_descriptors(x)
    d2, _ = face_descriptors(x)
    assert d1.shape == (3, 128) and f1.shape == (3,)
    assert torch.equal(d1, d2)
    assert torch.all(torch.isfinite(d1)) and torch.all(d1.norm(dim=1) > 0)


@pytest.mark.skipif(not FACES.is_dir(), reason="shared face data not present")
def test_real_faces_use_the_chip():
    from frsengine.io.images import read_image, to_square

    files = sorted(FACES.iterdir())[:2]
    faces = torch.stack([torch.from_numpy(to_square(read_image(f)[0], 128)).permute(2, 0, 1)
                         for f in files]).float() / 255
    res = identity_distance(faces, faces)
    assert res.fallbacks < 4  # at least one real face detected
    assert torch.all(res.distance.abs() < 1e-6)
    noisy = (faces + 0.03 * torch.randn(faces.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    other = identity_distance(noisy, faces.flip(0))
    assert torch.all(identity_distance(noisy, faces).distance < other.distance)


def test_bad_inputs():
    with pytest.raises(MetricInputError, match="one shape"):
        identity_distance(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 32))
    with pytest.raises(MetricInputError, match="N, 3, H, W"):
        face_descriptors(torch.rand(1, 1, 64, 64))
    with pytest.raises(MetricInputError, match="N, 3, H, W"):
        face_descriptors(np.zeros((1, 3, 64, 64)))
