"""Face detection with five alignment landmarks (dlib HOG or CNN detector + 68-point predictor).

The five points are those of the FFHQ template (``frsengine.face.align``): the centres of the
eyes (mean of each eye's six 68-point landmarks), the nose tip (point 30) and the mouth corners
(48, 54). dlib's own 5-point model marks eye corners and the base of the nose instead, which do not
match that template. Large photos are searched at a reduced scale (the landmarks are then fitted
at full resolution); small ones are upsampled once so faces down to ~40 px are found.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from frsengine.face.dlib_models import cnn_face_detector, frontal_face_detector, import_dlib, shape_predictor

DETECTORS = ("hog", "cnn")
DETECT_SIDE = 1600      # photos larger than this (long side) are searched scaled down to it
UPSAMPLE_BELOW = 1000   # photos smaller than this (long side, after scaling) are searched upsampled x2
# One dlib call at a time: the detector and predictor objects are shared (cached per process) and
# dlib does not document them as thread-safe; decoding threads still overlap with everything else.
_DLIB_LOCK = threading.Lock()


@dataclass
class Face:
    box: tuple[float, float, float, float]   # x0, y0, x1, y1 in image pixels
    landmarks: np.ndarray                    # (5, 2) x, y: left eye, right eye, nose, mouth left/right
    score: float

    @property
    def size(self) -> float:
        """Side of the detection box in pixels."""
        x0, y0, x1, y1 = self.box
        return float(max(x1 - x0, y1 - y0))

    def describe(self) -> str:
        x0, y0, x1, y1 = (int(round(v)) for v in self.box)
        return f"face at ({x0},{y0})-({x1},{y1}), {self.size:.0f} px"


def detect_faces(image: np.ndarray, detector: str = "hog", upsample: int | None = None) -> list[Face]:
    """Faces in an HxWx3 uint8 RGB image, largest first."""
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"detect_faces needs an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    dlib = import_dlib()
    h, w = image.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                   interpolation=cv2.INTER_AREA)
    if upsample is None:
        upsample = 1 if max(small.shape[:2]) < UPSAMPLE_BELOW else 0
    small = np.ascontiguousarray(small)
    image = np.ascontiguousarray(image)
    with _DLIB_LOCK:
        return _detect(dlib, image, small, scale, detector, upsample)


def _detect(dlib, image, small, scale, detector, upsample) -> list[Face]:
    if detector == "hog":
        rects, scores, _ = frontal_face_detector().run(small, upsample, 0.0)
        found = list(zip(rects, scores))
    else:
        found = [(d.rect, d.confidence) for d in cnn_face_detector()(small, upsample)]
    predictor = shape_predictor(68)
    faces = []
    for rect, score in found:
        box = tuple(v / scale for v in (rect.left(), rect.top(), rect.right(), rect.bottom()))
        full = dlib.rectangle(*(int(round(v)) for v in box))
        shape = predictor(image, full)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float64)
        five = np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[30], pts[48], pts[54]])
        faces.append(Face(box, five, float(score)))
    faces.sort(key=lambda f: -f.size)
    return faces
