"""Five-point face alignment and paste-back.

A face is aligned by the similarity transform (rotation, uniform scale, translation; no
reflection) that maps its five landmarks — eye centres, nose tip, mouth corners — onto a template
by least squares (Umeyama). The default template is the FFHQ one (the 5-point template GFPGAN and
CodeFormer crop with), given at 512x512 and scaled to the model's input size. Paste-back warps the
restored crop with the inverse transform and blends it in under a feathered mask, touching only
the face's bounding box.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

# Left eye, right eye (image left/right), nose tip, left and right mouth corner, in 512x512 px.
FFHQ_TEMPLATE_512 = np.array([
    [192.98138, 239.94708], [318.90277, 240.19360], [256.63416, 314.01935],
    [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float64)


def face_template(size: int | Sequence[int], template_512: np.ndarray = FFHQ_TEMPLATE_512) -> np.ndarray:
    """The 5-point template scaled from 512x512 to ``size`` (an int, or (H, W))."""
    h, w = (size, size) if isinstance(size, int) else size
    return template_512 * np.array([w / 512.0, h / 512.0])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity transform taking points ``src`` to ``dst``
    (Umeyama 1991, reflections excluded)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s ** 2).sum() / len(src)
    if var <= 1e-12:
        raise ValueError("landmarks are degenerate (all at one point)")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rot = u @ fix @ vt
    scale = float((sig * np.diag(fix)).sum() / var)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def warp_face(image: np.ndarray, m: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """The aligned crop (``size`` = (H, W)) of an HxWxC float image under the 2x3 transform ``m``
    (image -> crop). Outside the image the border is mirrored."""
    h, w = size
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def paste_face(image: np.ndarray, face: np.ndarray, m: np.ndarray, feather: float = 0.06) -> None:
    """Blend the restored crop ``face`` back into ``image`` (float32 HxWxC, modified in place)
    where ``m`` (image -> crop) took it from. The mask is the crop's area eroded and blurred by
    ``feather`` x the face's size in the image, so no seam shows."""
    h, w = image.shape[:2]
    ch, cw = face.shape[:2]
    inv = invert_affine(m)
    corners = np.array([[0, 0, 1], [cw, 0, 1], [0, ch, 1], [cw, ch, 1]], np.float64) @ inv.T
    x0, y0 = np.floor(corners.min(0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    local = inv.copy()
    local[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(face, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    scale = float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))  # image px per crop px
    mask = cv2.warpAffine(np.ones((ch, cw), np.float32), local, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    radius = max(1, int(round(feather * max(ch, cw) * scale)))
    mask = cv2.erode(mask, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=radius / 2.0)
    if warped.ndim == 3:
        mask = mask[:, :, None]
    region = image[y0:y1, x0:x1]
    region += mask * (warped.reshape(region.shape) - region)
