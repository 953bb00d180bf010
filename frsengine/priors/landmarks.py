"""The landmark teacher: dlib's 68-point predictor on aligned face crops, and its per-image cache.

dlib's HOG detector runs on the face first. The faces here are aligned crops, so when it finds
nothing the predictor is tried on a fixed box instead: the image inset by
:data:`FALLBACK_INSET` on each side, which is where the detector puts the face on these crops
(on 200x200 UTKFace crops it returns (15, 15)-(194, 194), i.e. 7.5 %). dlib's predictor
starts from its mean shape, so on a box with no face in it (a blank or noise image) it still
returns a face-like shape that simply sits in the box. A fallback result must therefore also be
*anchored*: with the box shifted by +-8 % of its width, its points must move much less than the
box does (mean point shift / box shift <= :data:`ANCHOR_MAX`; measured: blank images 0.98-1.0,
noise 1.3, real faces the detector missed 0.05-0.8, detected faces 0.02-0.45). Either way the
result goes through a plausibility check (eyes above the nose above the mouth, a sensible eye
distance, points near the image); what fails it comes back with ``source == "none"`` and NaN
points. Nothing here raises on a face it cannot read: the flag says what happened.

Coordinates are pixel centres (x = 0 is the middle of the first column), as dlib's parts.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from frsengine.errors import FrsError

NUM_LANDMARKS = 68
# Index groups of the 68-point (iBUG 300-W) scheme. "left"/"right" are as seen in the image
# (smaller x = left), not the subject's.
JAW = tuple(range(0, 17))
BROW_LEFT = tuple(range(17, 22))
BROW_RIGHT = tuple(range(22, 27))
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_LOWER = tuple(range(31, 36))
EYE_LEFT = tuple(range(36, 42))
EYE_RIGHT = tuple(range(42, 48))
LIPS_OUTER = tuple(range(48, 60))
LIPS_INNER = tuple(range(60, 68))
# Outer eye corners: the "inter-ocular" distance of the 300-W NME.
OUTER_EYE_CORNERS = (36, 45)

SOURCES = ("hog", "fallback", "none")
FALLBACK_INSET = 0.075
ANCHOR_SHIFT = 0.08
ANCHOR_MAX = 0.85


@dataclass(frozen=True)
class LandmarkResult:
    """68 points (float32 (68, 2), x/y in the input image's pixels; NaN when source is 'none'),
    where the face box came from ('hog' detector, 'fallback' fixed box, or 'none' = nothing
    plausible found), the box used (left, top, right, bottom) and why it failed, if it did."""

    points: np.ndarray
    source: str
    box: tuple[int, int, int, int]
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.source != "none"


def fallback_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The fixed face box tried when the detector finds nothing (see the module docstring)."""
    dx, dy = round(FALLBACK_INSET * width), round(FALLBACK_INSET * height)
    return dx, dy, width - 1 - dx, height - 1 - dy


def plausibility(points: np.ndarray, height: int, width: int) -> str:
    """'' when the 68 points look like a face in this image, else the reason they do not."""
    if not np.all(np.isfinite(points)):
        return "non-finite landmarks"
    margin = 0.25 * max(height, width)
    if (points < -margin).any() or (points[:, 0] > width - 1 + margin).any() or (points[:, 1] > height - 1 + margin).any():
        return "landmarks far outside the image"
    eye_l, eye_r = points[list(EYE_LEFT)].mean(0), points[list(EYE_RIGHT)].mean(0)
    iod = float(np.linalg.norm(eye_r - eye_l))
    if not 0.12 * width <= iod <= 0.9 * width:
        return f"implausible eye distance ({iod:.1f} px in a {width} px image)"
    if eye_r[0] <= eye_l[0]:
        return "eyes in the wrong order"
    nose, mouth = points[33], points[list(LIPS_OUTER)].mean(0)
    # along the axis perpendicular to the eye line, eyes < nose tip < mouth
    ex = (eye_r - eye_l) / iod
    down = np.array([-ex[1], ex[0]])
    eyes_y = float(((eye_l + eye_r) / 2) @ down)
    if not eyes_y < float(nose @ down) < float(mouth @ down):
        return "eyes, nose and mouth out of order"
    return ""


def detect_landmarks(image: np.ndarray, upsample: int = 0, fallback: bool = True) -> LandmarkResult:
    """dlib 68-point landmarks of one aligned face (HxWx3 uint8 RGB or HxW uint8).

    Uses the largest HOG detection; with none, the fixed fallback box (when `fallback`).
    Never raises for a face it cannot handle: see :class:`LandmarkResult`.
    """
    from frsengine.face.dlib_models import frontal_face_detector, import_dlib, shape_predictor

    dlib = import_dlib()
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise FrsError(f"detect_landmarks needs an HxW or HxWx3 uint8 image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    nan = np.full((NUM_LANDMARKS, 2), np.nan, np.float32)
    rects = list(frontal_face_detector()(image, upsample))
    attempts = []
    if rects:
        best = max(rects, key=lambda r: r.width() * r.height())
        attempts.append(("hog", (best.left(), best.top(), best.right(), best.bottom())))
    if fallback:
        attempts.append(("fallback", fallback_box(h, w)))
    def predict(box):
        shape = shape_predictor(68)(image, dlib.rectangle(*box))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)

    reasons = []
    for source, box in attempts:
        pts = predict(box)
        why = plausibility(pts, h, w)
        if not why and source == "fallback":
            follow = anchoring(pts, box, predict)
            if follow > ANCHOR_MAX:
                why = f"landmarks follow the box, not the image (shift ratio {follow:.2f}): no face found"
        if not why:
            return LandmarkResult(pts, source, box)
        reasons.append(f"{source}: {why}")
    if not attempts:
        return LandmarkResult(nan, "none", (0, 0, 0, 0), "no face detected (fallback off)")
    if not rects:
        reasons.insert(0, "no face detected")
    return LandmarkResult(nan, "none", attempts[-1][1], "; ".join(reasons))


def anchoring(points: np.ndarray, box: tuple[int, int, int, int], predict) -> float:
    """Mean point shift / box shift when the box moves by +-ANCHOR_SHIFT of its width
    diagonally: ~1 when the points just follow the box (nothing in the image holds them)."""
    d = max(1, round(ANCHOR_SHIFT * (box[2] - box[0])))
    ratios = []
    for s in (d, -d):
        moved = predict((box[0] + s, box[1] + s, box[2] + s, box[3] + s))
        ratios.append(float(np.linalg.norm(moved - points, axis=1).mean()) / (abs(s) * 2 ** 0.5))
    return float(np.mean(ratios))


def scale_points(points: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Map pixel-centre coordinates from an image of (H, W) to a resized (H', W') one."""
    (sh, sw), (dh, dw) = src_size, dst_size
    out = np.asarray(points, np.float32).copy()
    out[..., 0] = (out[..., 0] + 0.5) * (dw / sw) - 0.5
    out[..., 1] = (out[..., 1] + 0.5) * (dh / sh) - 0.5
    return out


def square_crop_points(points: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """Landmarks of an HxW image mapped into `frsengine.io.to_square(image, size)`."""
    s = min(height, width)
    top, left = (height - s) // 2, (width - s) // 2
    shifted = np.asarray(points, np.float32) - np.array([left, top], np.float32)
    return scale_points(shifted, (s, s), (size, size))


class TeacherCache:
    """Per-image teacher landmarks, stored as one .npz (no pickle: plain arrays and a JSON
    string), rewritten atomically so that an interrupted pass resumes from the last save.

    Arrays: names (N,) str, points (N, 68, 2) float32 in the working frame (`size` x `size`,
    the square-cropped face), source (N,) int8 index into SOURCES, boxes (N, 4) int32 in the
    original image's pixels.
    """

    VERSION = 1

    def __init__(self, size: int = 128, root: str = ""):
        self.size = size
        self.root = root
        self.names: list[str] = []
        self.points: list[np.ndarray] = []
        self.source: list[int] = []
        self.boxes: list[tuple[int, int, int, int]] = []
        self.reasons: dict[str, str] = {}
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def add(self, name: str, result: LandmarkResult, height: int, width: int) -> None:
        pts = square_crop_points(result.points, height, width, self.size)
        if name in self._index:
            i = self._index[name]
            self.points[i], self.source[i], self.boxes[i] = pts, SOURCES.index(result.source), result.box
        else:
            self._index[name] = len(self.names)
            self.names.append(name)
            self.points.append(pts)
            self.source.append(SOURCES.index(result.source))
            self.boxes.append(tuple(int(v) for v in result.box))
        if result.reason:
            self.reasons[name] = result.reason

    def arrays(self) -> dict[str, np.ndarray]:
        n = len(self.names)
        return {
            "names": np.array(self.names, dtype=str) if n else np.zeros(0, "U1"),
            "points": np.stack(self.points).astype(np.float32) if n else np.zeros((0, NUM_LANDMARKS, 2), np.float32),
            "source": np.array(self.source, np.int8),
            "boxes": np.array(self.boxes, np.int32).reshape(n, 4),
        }

    def usable(self, sources: tuple[str, ...] = ("hog", "fallback")) -> tuple[list[str], np.ndarray]:
        """Names and (N, 68, 2) points of the faces whose source is one of `sources`."""
        keep = [i for i, s in enumerate(self.source) if SOURCES[s] in sources]
        pts = np.stack([self.points[i] for i in keep]) if keep else np.zeros((0, NUM_LANDMARKS, 2), np.float32)
        return [self.names[i] for i in keep], pts

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for v in self.source if SOURCES[v] == s) for s in SOURCES}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"version": self.VERSION, "size": self.size, "root": self.root, "sources": list(SOURCES),
                "reasons": self.reasons}
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **self.arrays())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TeacherCache":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in ("names", "points", "source", "boxes")}
        except FileNotFoundError:
            raise FrsError(f"teacher cache '{path}' does not exist: run `frsengine priors build` first") from None
        except (OSError, ValueError, KeyError) as exc:
            raise FrsError(f"'{path}' is not a teacher cache ({exc}): rebuild it with `frsengine priors build`") from None
        if meta.get("version") != cls.VERSION:
            raise FrsError(f"teacher cache '{path}' has version {meta.get('version')}, expected {cls.VERSION}: rebuild it")
        cache = cls(int(meta["size"]), meta.get("root", ""))
        cache.names = [str(n) for n in arrays["names"]]
        cache.points = list(arrays["points"].astype(np.float32))
        cache.source = [int(s) for s in arrays["source"]]
        cache.boxes = [tuple(int(v) for v in b) for b in arrays["boxes"]]
        cache.reasons = dict(meta.get("reasons", {}))
        cache._index = {n: i for i, n in enumerate(cache.names)}
        return cache
