"""Priors drawn from 68 landmarks: Gaussian heatmaps, parsing maps from landmark polygons and
component boxes. What a landmark model cannot give (hair, neck, ears, clothes, the forehead's
true edge) is in docs/priors.md.

Coordinates are pixel centres (x = 0 is the middle of the first column). Heatmaps, boxes and
heatmap decoding are torch (batched, differentiable where it makes sense, exportable); parsing
maps paint the pixels whose centres fall inside each polygon (scikit-image's polygon fill).
"""
from __future__ import annotations

import numpy as np
import torch
from skimage import draw as _skdraw

from frsengine.priors import landmarks as L

# Parsing classes, in channel order; "left"/"right" as seen in the image.
PARSING_CLASSES = ("background", "skin", "brow_left", "brow_right", "eye_left", "eye_right",
                   "nose", "lip_upper", "lip_lower", "mouth_inner")
NUM_CLASSES = len(PARSING_CLASSES)
PARSING_COLORS = np.array([  # RGB, for overlays
    (0, 0, 0), (230, 180, 140), (120, 60, 20), (160, 90, 30), (40, 120, 255), (0, 200, 255),
    (80, 200, 80), (230, 40, 60), (170, 0, 90), (250, 240, 60)], np.uint8)
COMPONENTS = ("eye_left", "eye_right", "nose", "mouth")

# Geometry of the approximations (fractions of distances measured on the landmarks).
FOREHEAD_RISE = 0.9      # brow line moved up by this x nose length (27 -> 33) to close the skin polygon
BROW_THICKNESS = 0.22    # brow band thickness, x brow length (17 -> 21), tapered
NOSE_WING = 0.25         # nostril wings extend beyond points 31/35 by this x their distance
NOSE_BRIDGE = 0.18       # half-width of the bridge at point 27, x the 31-35 distance
# Component box side (square), x eye-centre distance, or x the component's own extent.
BOX_EYE = 0.8
BOX_NOSE = (0.75, 1.15)   # max(0.75 iod, 1.15 nose length)
BOX_MOUTH = (0.95, 1.3)   # max(0.95 iod, 1.3 mouth width)


def heatmaps(points: torch.Tensor, size: int | tuple[int, int], sigma: float = 2.0,
             missing: bool = True) -> torch.Tensor:
    """(B, N, 2) points -> (B, N, H, W) heatmaps, one Gaussian of peak 1 and std `sigma` px
    per point. With `missing`, a NaN point gives an all-zero map (without, the graph has no
    NaN test, for export)."""
    h, w = (size, size) if isinstance(size, int) else size
    points = torch.as_tensor(points, dtype=torch.float32)
    if not missing:
        valid = torch.ones(points.shape[:-1], dtype=torch.bool, device=points.device)
        pts = points
    else:
        valid = torch.isfinite(points).all(-1)
        pts = torch.where(valid[..., None], points, torch.zeros_like(points))
    xs = torch.arange(w, dtype=points.dtype, device=points.device)
    ys = torch.arange(h, dtype=points.dtype, device=points.device)
    gx = torch.exp(-(xs - pts[..., 0:1]) ** 2 / (2 * sigma ** 2))  # (B, N, W)
    gy = torch.exp(-(ys - pts[..., 1:2]) ** 2 / (2 * sigma ** 2))  # (B, N, H)
    return gy[..., :, None] * gx[..., None, :] * valid[..., None, None].to(points.dtype)


def decode_heatmaps(maps: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) heatmaps -> (B, N, 2) points: the arg-max refined per axis by a parabola
    through the logs of its two neighbours (exact for a Gaussian peak; values are clamped
    to 1e-6 first, and the offset to half a pixel)."""
    b, n, h, w = maps.shape
    flat = maps.reshape(b, n, h * w)
    idx = flat.argmax(-1)
    ay, ax = idx // w, idx % w

    def at(dy: int, dx: int) -> torch.Tensor:
        yy, xx = (ay + dy).clamp(0, h - 1), (ax + dx).clamp(0, w - 1)
        return flat.gather(-1, (yy * w + xx)[..., None])[..., 0].clamp(min=1e-6).log()

    def offset(lo: torch.Tensor, mid: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        curv = lo - 2 * mid + hi
        off = 0.5 * (lo - hi) / torch.where(curv < -1e-9, curv, torch.full_like(curv, -1e-9))
        return torch.where(curv < -1e-9, off, torch.zeros_like(off)).clamp(-0.5, 0.5)

    c = at(0, 0)
    ox = torch.where((ax > 0) & (ax < w - 1), offset(at(0, -1), c, at(0, 1)), torch.zeros_like(c))
    oy = torch.where((ay > 0) & (ay < h - 1), offset(at(-1, 0), c, at(1, 0)), torch.zeros_like(c))
    return torch.stack([ax.to(maps.dtype) + ox, ay.to(maps.dtype) + oy], -1)


def component_boxes(points: torch.Tensor) -> torch.Tensor:
    """(B, 68, 2) landmarks -> (B, 4, 3) square boxes (cx, cy, side) in pixels, in COMPONENTS
    order: eye_left, eye_right, nose, mouth. Pure tensor arithmetic (differentiable, exportable)."""
    points = torch.as_tensor(points, dtype=torch.float32)
    eye_l = points[:, 36:42].mean(1)
    eye_r = points[:, 42:48].mean(1)
    iod = (eye_r - eye_l).norm(dim=-1)
    nose_c = (points[:, 27] + points[:, 33]) / 2
    nose_len = (points[:, 33] - points[:, 27]).norm(dim=-1)
    mouth_c = points[:, 48:60].mean(1)
    mouth_w = (points[:, 54] - points[:, 48]).norm(dim=-1)
    eye_side = BOX_EYE * iod
    nose_side = torch.maximum(BOX_NOSE[0] * iod, BOX_NOSE[1] * nose_len)
    mouth_side = torch.maximum(BOX_MOUTH[0] * iod, BOX_MOUTH[1] * mouth_w)
    centres = torch.stack([eye_l, eye_r, nose_c, mouth_c], 1)
    sides = torch.stack([eye_side, eye_side, nose_side, mouth_side], 1)
    return torch.cat([centres, sides[..., None]], -1)


def _poly(img: np.ndarray, pts: np.ndarray, value: int) -> None:
    """Paint the pixels whose centres lie inside the polygon (so that a class's pixel count
    matches the polygon's area, without the outward half-pixel of an edge-inclusive fill)."""
    pts = np.asarray(pts, np.float64)
    rows, cols = _skdraw.polygon(pts[:, 1], pts[:, 0], img.shape)
    img[rows, cols] = value


def parsing_map(points: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(68, 2) landmarks -> (H, W) uint8 class indices into PARSING_CLASSES. NaN points give
    an all-background map. Classes are painted in order skin, nose, brows, eyes, lips, inner
    mouth, each over the previous."""
    h, w = (size, size) if isinstance(size, int) else size
    out = np.zeros((h, w), np.uint8)
    p = np.asarray(points, np.float64)
    if p.shape != (L.NUM_LANDMARKS, 2) or not np.isfinite(p).all():
        return out
    cls = {name: i for i, name in enumerate(PARSING_CLASSES)}
    eye_l, eye_r = p[36:42].mean(0), p[42:48].mean(0)
    ex = eye_r - eye_l
    ex = ex / max(np.linalg.norm(ex), 1e-6)
    up = np.array([ex[1], -ex[0]])  # perpendicular to the eye line, towards the top of the head
    # skin: jaw line, then the brow line (right to left) raised to approximate the forehead
    rise = FOREHEAD_RISE * np.linalg.norm(p[33] - p[27])
    brows_up = p[26:16:-1] + rise * up
    _poly(out, np.concatenate([p[0:17], brows_up]), cls["skin"])
    # nose: bridge top (narrow) down to the nostril wings
    nw = np.linalg.norm(p[35] - p[31])
    nose = np.array([p[27] - NOSE_BRIDGE * nw * ex, p[31] - NOSE_WING * nw * ex, p[32], p[33], p[34],
                     p[35] + NOSE_WING * nw * ex, p[27] + NOSE_BRIDGE * nw * ex])
    _poly(out, nose, cls["nose"])
    # brows: dlib marks their upper edge; a tapered band below it
    for name, idx in (("brow_left", L.BROW_LEFT), ("brow_right", L.BROW_RIGHT)):
        b = p[list(idx)]
        taper = np.array([0.55, 0.9, 1.0, 0.95, 0.75]) if name == "brow_left" else np.array([0.75, 0.95, 1.0, 0.9, 0.55])
        thick = BROW_THICKNESS * np.linalg.norm(b[-1] - b[0]) * taper
        _poly(out, np.concatenate([b, (b - thick[:, None] * up)[::-1]]), cls[name])
    _poly(out, p[list(L.EYE_LEFT)], cls["eye_left"])
    _poly(out, p[list(L.EYE_RIGHT)], cls["eye_right"])
    _poly(out, p[[48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]], cls["lip_upper"])
    _poly(out, p[[54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]], cls["lip_lower"])
    _poly(out, p[list(L.LIPS_INNER)], cls["mouth_inner"])
    return out


def parsing_maps(points: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(B, 68, 2) -> (B, H, W) uint8 class maps."""
    return np.stack([parsing_map(p, size) for p in np.asarray(points)])


def one_hot(classes: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """(B, H, W) integer classes -> (B, C, H, W) float one-hot (the MFPSNet parsing input)."""
    return torch.nn.functional.one_hot(classes.long(), num_classes).permute(0, 3, 1, 2).float()


def colorize(classes: np.ndarray) -> np.ndarray:
    """(H, W) classes -> (H, W, 3) uint8 RGB."""
    return PARSING_COLORS[np.asarray(classes, np.intp)]
