"""`priors show`: one face's priors as a row of panels a person can judge."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from frsengine.io import read_image, save_grid, to_square
from frsengine.priors.landmarks import detect_landmarks, square_crop_points
from frsengine.priors.rasterize import COMPONENTS, colorize, component_boxes, heatmaps, parsing_map

BOX_COLORS = {"eye_left": (40, 120, 255), "eye_right": (0, 200, 255), "nose": (80, 200, 80), "mouth": (230, 40, 60)}


def _up(img: np.ndarray, scale: int) -> np.ndarray:
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST if img.ndim == 2 else cv2.INTER_CUBIC)


def _blend(face: np.ndarray, layer: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (face.astype(np.float32) * (1 - alpha) + layer.astype(np.float32) * alpha).round().astype(np.uint8)


def _draw_boxes(img: np.ndarray, boxes: np.ndarray, scale: int) -> np.ndarray:
    img = img.copy()
    for (cx, cy, side), name in zip(boxes, COMPONENTS):
        x0, y0 = (cx + 0.5 - side / 2) * scale, (cy + 0.5 - side / 2) * scale
        x1, y1 = x0 + side * scale, y0 + side * scale
        cv2.rectangle(img, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))), BOX_COLORS[name], 1)
    return img


def _draw_points(img: np.ndarray, pts: np.ndarray, scale: int, color=(255, 255, 0)) -> np.ndarray:
    img = img.copy()
    for x, y in pts:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(img, (int(round((x + 0.5) * scale)), int(round((y + 0.5) * scale))), max(1, scale), color, -1)
    return img


def _heat_panel(face: np.ndarray, heat: np.ndarray, pts: np.ndarray, scale: int) -> np.ndarray:
    m = np.clip(heat.max(0), 0, 1)
    color = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    gray = np.repeat(face.mean(-1, keepdims=True), 3, -1).astype(np.uint8)
    panel = (gray * (1 - m[..., None] * 0.8) + color * (m[..., None] * 0.8)).round().astype(np.uint8)
    return _draw_points(_up(panel, scale), pts, scale)


def _parse_panel(face: np.ndarray, classes: np.ndarray, boxes: np.ndarray | None, scale: int) -> np.ndarray:
    panel = _up(_blend(face, colorize(classes), 0.55), scale)
    return _draw_boxes(panel, boxes, scale) if boxes is not None else panel


def show(image: str | Path, output: str | Path, student: str | Path | None = None,
         dictionary: str | Path | None = None, severity: str = "none", seed: int = 0,
         scale: int = 2, size: int = 128) -> tuple[Path, list[str]]:
    from frsengine.priors.evaluate import degrade

    img, notes = read_image(image)
    face_hq = to_square(img, size)
    teacher = detect_landmarks(img)
    notes = [f"note {image}: {n}" for n in notes]
    notes.append(f"teacher: {teacher.source}" + (f" ({teacher.reason})" if teacher.reason else ""))
    t_pts = square_crop_points(teacher.points, img.shape[0], img.shape[1], size)
    hq = torch.from_numpy(face_hq).permute(2, 0, 1)[None].float() / 255.0
    lq = degrade(hq, severity, seed, [0])
    face = (lq[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    panels, labels = [_up(face, scale)], ["input" if severity == "none" else f"input ({severity} LQ)"]
    t_boxes = component_boxes(torch.from_numpy(t_pts)[None])[0].numpy() if teacher.ok else None
    panels.append(_parse_panel(face, parsing_map(t_pts, size), t_boxes, scale))
    labels.append(f"teacher parsing ({teacher.source})")
    t_heat = heatmaps(torch.from_numpy(t_pts)[None], size)[0].numpy()
    panels.append(_heat_panel(face, t_heat, t_pts, scale))
    labels.append("teacher heatmaps")
    s_pts = None
    if student is not None:
        from frsengine.priors.train import load_checkpoint

        model, _, _ = load_checkpoint(student)
        with torch.no_grad():
            o = model(lq)
        s_pts = o.landmarks[0].numpy()
        s_boxes = component_boxes(o.landmarks)[0].numpy()
        panels.append(_parse_panel(face, o.parsing[0].argmax(0).numpy().astype(np.uint8), s_boxes, scale))
        labels.append("student parsing")
        panels.append(_heat_panel(face, o.heatmaps[0].numpy(), s_pts, scale))
        labels.append("student heatmaps")
    if dictionary is not None:
        from frsengine.priors.dictionary import load_dictionary

        lookup, tensors, _ = load_dictionary(dictionary)
        pts = s_pts if s_pts is not None else (t_pts if teacher.ok else None)
        if pts is None:
            notes.append("dictionary panel skipped: no landmarks (teacher failed, no --student)")
        else:
            boxes = component_boxes(torch.from_numpy(np.asarray(pts))[None])
            with torch.no_grad():
                _, attn = lookup.component_features(lq, boxes)
            canvas = face.copy()
            for i, name in reversed(list(enumerate(COMPONENTS))):  # mouth first: the nose box overlaps it
                best = int(attn[0, i].argmax())
                crop = tensors[f"medoid.{name}"][best].permute(1, 2, 0).numpy()
                cx, cy, side = boxes[0, i].tolist()
                s = max(2, int(round(side)))
                x0, y0 = int(round(cx + 0.5 - side / 2)), int(round(cy + 0.5 - side / 2))
                patch = cv2.resize(crop, (s, s), interpolation=cv2.INTER_CUBIC)
                ys, xs = slice(max(y0, 0), min(y0 + s, size)), slice(max(x0, 0), min(x0 + s, size))
                canvas[ys, xs] = patch[ys.start - y0: ys.stop - y0, xs.start - x0: xs.stop - x0]
                notes.append(f"dictionary {name}: atom {best} (weight {float(attn[0, i, best]):.2f})")
            panels.append(_draw_boxes(_up(canvas, scale), boxes[0].numpy(), scale))
            labels.append("nearest dictionary atoms")
    return save_grid(output, [panels], labels), notes
