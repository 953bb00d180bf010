"""Image grids for previews and evaluation figures: rows of equally sized images, with an
optional header of column labels."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from frsengine.errors import FrsError
from frsengine.io.images import write_image

_GAP = 2  # pixels between cells, so that neighbouring faces stay distinguishable
_BACKGROUND = 255


def make_grid(rows: list[list[np.ndarray]], labels: list[str] | None = None) -> np.ndarray:
    """Tile rows of equally sized uint8 images (HxW or HxWx3) into one HxWx3 array. Rows
    may be shorter than the longest one (blank cells); `labels` name the columns."""
    cells = [c for row in rows for c in row]
    if not cells:
        raise FrsError("save_grid needs at least one image")
    cells = [_as_rgb(c) for c in cells]
    h, w = cells[0].shape[:2]
    for c in cells:
        if c.shape[:2] != (h, w):
            raise FrsError(f"grid images must share one size: got {c.shape[1]}x{c.shape[0]} "
                           f"and {w}x{h}")
    n_cols = max(len(row) for row in rows)
    if labels is not None and len(labels) != n_cols:
        raise FrsError(f"{len(labels)} labels for {n_cols} grid columns")
    font = ImageFont.load_default()
    header = _header_height(font, labels) if labels else 0
    out = np.full((header + len(rows) * (h + _GAP) + _GAP, n_cols * (w + _GAP) + _GAP, 3),
                  _BACKGROUND, np.uint8)
    it = iter(cells)
    for r, row in enumerate(rows):
        for c in range(len(row)):
            y, x = header + _GAP + r * (h + _GAP), _GAP + c * (w + _GAP)
            out[y: y + h, x: x + w] = next(it)
    if labels:
        canvas = Image.fromarray(out)
        draw = ImageDraw.Draw(canvas)
        for c, text in enumerate(labels):
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            x = _GAP + c * (w + _GAP) + (w - (right - left)) // 2 - left
            y = (header - (bottom - top)) // 2 - top
            draw.text((x, y), text, fill=(0, 0, 0), font=font)
        out = np.asarray(canvas)
    return out


def save_grid(path: str | os.PathLike, rows: list[list[np.ndarray]],
              labels: list[str] | None = None) -> Path:
    """Write `make_grid(rows, labels)` as a PNG (atomically, creating parent folders)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise FrsError(f"grid file '{path}' must end in .png")
    return write_image(path, make_grid(rows, labels))


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise FrsError(f"grid images must be uint8, got {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise FrsError(f"grid images must be HxW or HxWx3, got shape {img.shape}")
    return img


def _header_height(font, labels: list[str]) -> int:
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    tallest = max(probe.textbbox((0, 0), t or " ", font=font)[3] for t in labels)
    return tallest + 6
