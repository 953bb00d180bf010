"""Per-image degradation with OpenCV, PIL and a real JPEG codec: the faithful baseline.

Each image is a uint8 HxWx3 RGB array and every step stores uint8, as the authors'
per-image pipeline does. Noise comes from numpy's PCG64 seeded with the sample's
`noise_seed`, so its realisation differs from the torch backend's while its law is the same.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image

from frsengine.degrade.params import (SINGLE_NOISE_STREAM, SampleParams, blur_kernel2d, gaussian_kernel1d,
                                      numpy_noise)
from frsengine.degrade.presets import Preset


def blur_image(img: np.ndarray, p: SampleParams, truncate: float) -> np.ndarray:
    if p.blur_kind == "gaussian":
        g = gaussian_kernel1d(p.blur_sigma, truncate)
        return cv2.sepFilter2D(img, -1, g, g, borderType=cv2.BORDER_REFLECT_101)
    return cv2.filter2D(img, -1, blur_kernel2d(p, truncate), borderType=cv2.BORDER_REFLECT_101)


def resize_image(img: np.ndarray, size: int, antialias: bool) -> np.ndarray:
    """Bicubic resize to size x size: PIL (antialiased, as MATLAB) when shrinking with
    `antialias`, else OpenCV's cubic (no antialiasing, as imgaug)."""
    if antialias and size < img.shape[0]:
        return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC))
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)


def noise_image(img: np.ndarray, p: SampleParams, per_channel: bool, stream: int = 0) -> np.ndarray:
    n = numpy_noise(p, img.shape[:2], per_channel, stream)
    return np.clip(np.rint(img + n), 0, 255).astype(np.uint8)


def jpeg_image(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]


def degrade_image(img: np.ndarray, p: SampleParams, preset: Preset,
                  singles: bool = True) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Full degradation (and the four singles: blur, noise, jpeg, downup) of one RGB uint8 image."""
    n = img.shape[0]
    cur, resized, blurred = img, False, None
    for op in preset.order:
        if op == "blur":
            cur = blur_image(cur, p, preset.blur.truncate)
            if op == preset.order[0]:
                blurred = cur  # the blur-only single is this very image
        elif op == "down":
            cur, resized = resize_image(cur, p.lr_size(n), preset.down.antialias), True
        elif op == "noise":
            cur = noise_image(cur, p, preset.noise.per_channel)
        elif op == "jpeg":
            cur = jpeg_image(cur, p.jpeg_quality)
    full = resize_image(cur, n, False) if resized else cur
    if not singles:
        return full, None
    down_up = resize_image(resize_image(img, p.lr_size(n), preset.down.antialias), n, False)
    return full, [
        blurred if blurred is not None else blur_image(img, p, preset.blur.truncate),
        noise_image(img, p, preset.noise.per_channel, stream=SINGLE_NOISE_STREAM),
        jpeg_image(img, p.jpeg_quality),
        down_up,
    ]


class OpenCVBackend:
    """Loops over the batch image by image on the CPU (the baseline)."""

    name = "opencv"

    def run(self, hq: torch.Tensor, params: list[SampleParams], preset: Preset,
            singles: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        imgs = to_uint8_hwc(hq)
        fulls, single_sets = [], []
        for img, p in zip(imgs, params):
            full, s = degrade_image(np.ascontiguousarray(img), p, preset, singles)
            fulls.append(full)
            if singles:
                single_sets.append(np.stack(s))
        full_t = from_uint8_hwc(np.stack(fulls), hq.device)
        if not singles:
            return full_t, None
        s = torch.from_numpy(np.stack(single_sets)).to(hq.device)  # (B,4,H,W,3)
        return full_t, s.permute(0, 1, 4, 2, 3).float().div_(255.0)


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) float [0,1] or uint8 tensor -> (B,H,W,3) uint8 array."""
    if x.dtype != torch.uint8:
        x = x.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def from_uint8_hwc(a: np.ndarray, device=None) -> torch.Tensor:
    """(B,H,W,3) uint8 array -> (B,3,H,W) float [0,1] tensor."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
