"""Student vs dlib on held-out faces, against the teacher (dlib on the HQ face).

Severities (the `paper` preset, seeded per face):
  none      the HQ face itself
  moderate  paper preset with the ranges narrowed: blur sigma 0.2-2, down-scale 1-3, noise 0-6,
            JPEG quality 60-90
  full      the paper preset's full ranges (sigma 0.2-5, r 1-8, noise 0-15, JPEG 40-90)

Metrics: NME = mean point-to-point error / outer-eye-corner distance (300-W "inter-ocular") of
the teacher's points; parsing mIoU = IoU per class from the confusion matrix summed over all
faces, averaged over the 10 classes (background included). dlib's landmarks are rasterised into
parsing maps the same way as the teacher's. A dlib failure (no plausible landmarks) counts as an
all-background map in its mIoU and is left out of its NME (reported as its failure rate); the
student's NME on the same subset is given beside it. Methods: the student; dlib as the teacher
runs (HOG, else the fixed fallback box); dlib with HOG only (a face HOG misses is a failure);
and the mean shape of the evaluated faces' teacher landmarks (what alignment alone gives).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from frsengine.priors.landmarks import OUTER_EYE_CORNERS, detect_landmarks, square_crop_points
from frsengine.priors.rasterize import NUM_CLASSES, PARSING_CLASSES, parsing_maps

SEVERITIES = {
    "none": None,
    "moderate": {"blur.sigma": (0.2, 2.0), "down.scale": (1.0, 3.0), "noise.sigma": (0.0, 6.0),
                 "jpeg.quality": (60, 90)},
    "full": {},
}


def degrade(hq: torch.Tensor, severity: str, seed: int, indices) -> torch.Tensor:
    """(B, 3, H, W) float HQ in [0, 1] -> the LQ faces of a severity (float in [0, 1])."""
    from frsengine.degrade import Degrader

    overrides = SEVERITIES[severity]
    if overrides is None:
        return hq
    return Degrader("paper", "torch", singles=False, overrides=overrides)(hq, seed=seed, indices=list(indices)).lq_full


def nme(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(N, 68, 2) -> (N,) mean point error / outer-eye-corner distance of the target."""
    iod = np.linalg.norm(target[:, OUTER_EYE_CORNERS[1]] - target[:, OUTER_EYE_CORNERS[0]], axis=-1)
    return np.linalg.norm(pred - target, axis=-1).mean(-1) / iod


def confusion(pred: np.ndarray, target: np.ndarray, k: int = NUM_CLASSES) -> np.ndarray:
    return np.bincount(target.astype(np.int64).ravel() * k + pred.astype(np.int64).ravel(), minlength=k * k).reshape(k, k)


def miou(conf: np.ndarray) -> tuple[float, list[float]]:
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    return float(np.nanmean(iou)), [round(float(v), 4) for v in iou]


def teacher_labels(root: Path, names: list[str], size: int, progress: bool = False):
    """HQ faces (N, 3, size, size) uint8, teacher points (N, 68, 2) in that frame, and the names
    kept (faces where dlib found nothing plausible on the HQ image are dropped)."""
    from tqdm import tqdm

    from frsengine.io.images import read_image, to_square

    faces, points, kept, sources = [], [], [], {"hog": 0, "fallback": 0, "none": 0}
    for name in tqdm(names, desc="teacher on HQ", unit="face", disable=not progress):
        img, _ = read_image(root / name)
        res = detect_landmarks(img)
        sources[res.source] += 1
        if not res.ok:
            continue
        faces.append(torch.from_numpy(to_square(img, size)).permute(2, 0, 1))
        points.append(square_crop_points(res.points, img.shape[0], img.shape[1], size))
        kept.append(name)
    return torch.stack(faces), np.stack(points), kept, sources


@torch.no_grad()
def evaluate(root: str | Path, names: list[str], model, severities: list[str], seed: int = 1234,
             batch_size: int = 32, progress: bool = True, throughput_faces: int = 256) -> dict:
    from tqdm import tqdm

    root = Path(root)
    size = model.config.size
    faces, teacher, kept, sources = teacher_labels(root, names, size, progress)
    teacher_parse = parsing_maps(teacher, size)
    n = len(kept)
    model.eval()
    out = {"faces": n, "teacher_sources": sources, "threads": torch.get_num_threads(), "seed": seed,
           "classes": list(PARSING_CLASSES), "severities": {}}
    for sev in severities:
        lq_all, s_pts, s_parse, s_time = [], [], [], 0.0
        for start in range(0, n, batch_size):
            hq = faces[start:start + batch_size].float() / 255.0
            lq = degrade(hq, sev, seed, range(start, start + hq.shape[0]))
            lq_all.append((lq * 255).round().clamp(0, 255).to(torch.uint8))
            x = lq_all[-1].float() / 255.0  # the student sees exactly the uint8 image dlib gets
            t0 = time.perf_counter()
            o = model(x)
            s_time += time.perf_counter() - t0
            s_pts.append(o.landmarks.numpy())
            s_parse.append(o.parsing.argmax(1).to(torch.uint8).numpy())
        lq_u8 = torch.cat(lq_all).permute(0, 2, 3, 1).contiguous().numpy()
        s_pts, s_parse = np.concatenate(s_pts), np.concatenate(s_parse)
        d_pts = np.full_like(teacher, np.nan)
        d_src = []
        t0 = time.perf_counter()
        for i in tqdm(range(n), desc=f"dlib on LQ ({sev})", unit="face", disable=not progress):
            res = detect_landmarks(lq_u8[i])
            d_src.append(res.source)
            d_pts[i] = res.points
        d_time = time.perf_counter() - t0
        hog = np.array([s == "hog" for s in d_src])
        ok = np.array([s != "none" for s in d_src])
        mean_shape = np.broadcast_to(teacher.mean(0), teacher.shape)
        rows = {
            "student": (s_pts, np.ones(n, bool), s_parse, s_time),
            "dlib": (d_pts, ok, parsing_maps(np.where(ok[:, None, None], d_pts, np.nan), size), d_time),
            "dlib_hog_only": (d_pts, hog, parsing_maps(np.where(hog[:, None, None], d_pts, np.nan), size), None),
            "mean_shape": (mean_shape, np.ones(n, bool), parsing_maps(mean_shape[:1], size).repeat(n, 0), None),
        }
        res = {}
        for method, (pts, good, parse, seconds) in rows.items():
            err = nme(pts[good], teacher[good]) if good.any() else np.array([np.nan])
            m, iou = miou(confusion(parse, teacher_parse))
            res[method] = {"nme": float(err.mean()), "nme_median": float(np.median(err)),
                           "failure_rate": float(1 - good.mean()),
                           "bad_rate": float(((~good).sum() + (err > 0.08).sum()) / n),
                           "miou": m, "iou": iou,
                           "faces_per_s": n / seconds if seconds else None}
        s_err = nme(s_pts, teacher)
        res["student"]["nme_on_dlib_ok"] = float(s_err[ok].mean()) if ok.any() else float("nan")
        res["student"]["nme_on_dlib_hog"] = float(s_err[hog].mean()) if hog.any() else float("nan")
        out["severities"][sev] = res
        if sev == severities[-1] and throughput_faces:
            out["throughput"] = {"severity": sev, **throughput(model, torch.from_numpy(lq_u8[:throughput_faces]).permute(0, 3, 1, 2), batch_size=batch_size)}
    return out


@torch.no_grad()
def throughput(model, faces_u8: torch.Tensor, rounds: int = 5, batch_size: int = 32) -> dict:
    """Faces/s of the student (torch, batches of `batch_size`) and of dlib (detector + predictor
    + checks, one face at a time) on the same (N, 3, H, W) uint8 faces, measured in alternating
    rounds so that load from other processes hits both alike; medians and all rounds."""
    model.eval()
    x = faces_u8.float() / 255.0
    hwc = faces_u8.permute(0, 2, 3, 1).contiguous().numpy()
    n = faces_u8.shape[0]
    model(x[:batch_size])  # warm-up
    student, dlib_rates = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for start in range(0, n, batch_size):
            model(x[start:start + batch_size])
        student.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for i in range(n):
            detect_landmarks(hwc[i])
        dlib_rates.append(n / (time.perf_counter() - t0))
    return {"faces": n, "batch_size": batch_size, "threads": torch.get_num_threads(),
            "student_faces_per_s": float(np.median(student)), "dlib_faces_per_s": float(np.median(dlib_rates)),
            "student_rounds": [round(v, 1) for v in student], "dlib_rounds": [round(v, 1) for v in dlib_rates]}


def format_table(result: dict) -> str:
    lines = [f"{result['faces']} held-out faces (teacher on HQ: {result['teacher_sources']}); "
             f"torch threads {result['threads']}",
             "severity | method        | NME mean | NME median | failed | NME>0.08 or failed | mIoU   | faces/s",
             "---------|---------------|----------|------------|--------|--------------------|--------|--------"]
    for sev, r in result["severities"].items():
        for method, v in r.items():
            fps = f"{v['faces_per_s']:.1f}" if v.get("faces_per_s") else "-"
            lines.append(f"{sev:8s} | {method:13s} | {v['nme']:.4f}   | {v['nme_median']:.4f}     | "
                         f"{v['failure_rate']:.3f}  | {v['bad_rate']:.3f}              | {v['miou']:.4f} | {fps}")
        s = r["student"]
        lines.append(f"{sev:8s} | student NME on the faces dlib labelled: {s['nme_on_dlib_ok']:.4f} "
                     f"(on those HOG detected: {s['nme_on_dlib_hog']:.4f})")
    if "throughput" in result:
        t = result["throughput"]
        lines.append(f"throughput on {t['faces']} {t['severity']} LQ faces, {t['threads']} torch thread(s), alternating "
                     f"rounds (median): student {t['student_faces_per_s']:.1f} faces/s (batch {t['batch_size']}; "
                     f"rounds {t['student_rounds']}), dlib {t['dlib_faces_per_s']:.1f} faces/s (rounds {t['dlib_rounds']})")
    return "\n".join(lines)
