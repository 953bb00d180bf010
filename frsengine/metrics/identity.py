"""Identity distance: how far a restored face drifts from the ground truth's identity.

Each face is embedded with dlib's 128-d ResNet descriptor (``dlib_face_recognition_resnet_model_v1``
from face-recognition-models) and the distance is the Euclidean one between the two descriptors;
dlib calls two faces the same person below 0.6. The descriptor expects dlib's own 150x150 chip, so
each crop is searched with the HOG detector, its 5 dlib landmarks fitted, and the chip cut with
``dlib.get_face_chip``. Where no face is found (heavily degraded or odd crops), the whole crop is
resized to 150x150 instead — for the aligned crops the engine works on that is close to a chip — and
the result says how many images fell back, so a score resting on many fallbacks can be flagged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from frsengine.face.detect import _DLIB_LOCK  # dlib's cached models are shared, one call at a time
from frsengine.face.dlib_models import face_descriptor_model, frontal_face_detector, import_dlib, shape_predictor
from frsengine.io.images import to_square
from frsengine.metrics.full_reference import MetricInputError

CHIP_SIZE = 150      # the descriptor's input side
CHIP_PADDING = 0.25  # dlib's default margin around the landmarks
SAME_PERSON = 0.6    # dlib's threshold on the distance


@dataclass
class IdentityResult:
    distance: torch.Tensor   # (N,) float64 descriptor distance per pair
    fallback: torch.Tensor   # (N, 2) bool: no face found in (restored, ground truth)

    @property
    def fallbacks(self) -> int:
        """Number of images (of 2N) scored on the whole crop because no face was found."""
        return int(self.fallback.sum())


def identity_distance(restored: torch.Tensor, ground_truth: torch.Tensor, *,
                      upsample: int = 1) -> IdentityResult:
    """Descriptor distance of each (restored, ground-truth) pair of (N, 3, H, W) face crops in
    [0, 1]. ``upsample`` is the detector's number of 2x upsamplings (1 finds faces down to ~40 px)."""
    if not (isinstance(restored, torch.Tensor) and isinstance(ground_truth, torch.Tensor)) \
            or restored.shape != ground_truth.shape:
        raise MetricInputError("identity_distance: restored and ground_truth must be tensors of one shape "
                               f"(N, 3, H, W), got {_shape(restored)} and {_shape(ground_truth)}")
    d_r, f_r = face_descriptors(restored, upsample=upsample)
    d_g, f_g = face_descriptors(ground_truth, upsample=upsample)
    dist = (d_r - d_g).norm(dim=1)
    return IdentityResult(dist.to(restored.device), torch.stack([f_r, f_g], 1).to(restored.device))


def face_descriptors(images: torch.Tensor, *, upsample: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 128) float64 dlib descriptors of (N, 3, H, W) RGB crops in [0, 1], and an (N,) bool
    mask of the crops where no face was found (described whole, resized to 150x150)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3 \
            or not images.is_floating_point():
        raise MetricInputError("face_descriptors: needs float RGB crops (N, 3, H, W) in [0, 1], got "
                               f"{_shape(images)}")
    dlib = import_dlib()
    arrays = (images.detach().clamp(0, 1).mul(255).round().to(torch.uint8)
              .permute(0, 2, 3, 1).cpu().numpy())
    chips, fallback = [], []
    with _DLIB_LOCK:
        detector, predictor, model = frontal_face_detector(), shape_predictor(5), face_descriptor_model()
        for img in arrays:
            img = np.ascontiguousarray(img)
            rects = detector(img, upsample)
            if len(rects):
                rect = max(rects, key=lambda r: r.area())
                chips.append(dlib.get_face_chip(img, predictor(img, rect), size=CHIP_SIZE,
                                                padding=CHIP_PADDING))
            else:
                chips.append(to_square(img, CHIP_SIZE))
            fallback.append(not len(rects))
        desc = model.compute_face_descriptor(chips) if chips else []
    out = torch.tensor(np.array([np.asarray(d) for d in desc], np.float64).reshape(-1, 128))
    return out, torch.tensor(fallback, dtype=torch.bool)


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__
