"""Full-reference evaluation on a synthetic LQ set: every method restores every task's LQ faces,
which are scored against the HQ faces."""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from frsengine.eval.lqset import LQSet
from frsengine.eval.metrics import IdentityScorer, Metric
from frsengine.eval.models import Method
from frsengine.eval.tasks import TASKS

CHUNK = 64  # faces read, restored and scored together


@dataclass
class TaskScores:
    """Per-image values of one task: scores[method][metric] -> list (NaN: not scored)."""

    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)        # faces a model left unchanged (NaN output)
    id_fallbacks: dict[str, int] = field(default_factory=dict)  # identity: restored faces without a found face
    id_gt_fallbacks: int = 0                                     # identity: HQ faces without a found face
    grid: dict[str, list[np.ndarray]] = field(default_factory=dict)  # "LQ", method labels, "GT" -> uint8 faces
    seconds: dict[str, float] = field(default_factory=dict)     # restoration time per model


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> (N, H, W, 3) uint8."""
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def read_faces(folder: Path, names: list[str]) -> torch.Tensor:
    """(N, 3, H, W) float32 in [0, 1] of `folder/name` for each name (files written by build_eval_set)."""
    from frsengine.io import read_image

    arrays = [read_image(folder / n, min_side=1)[0] for n in names]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def run_method(method: Method, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(restored faces rounded to 8 bits as a saved PNG would be, faces the model could not restore)."""
    if method.kind == "baseline":
        return x, 0
    from frsengine.api import RestoreWarning, restore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RestoreWarning)  # counted from the report instead
        y, report = restore(x, model=method.restorer, return_report=True)
    failed = sum(not item.ok for item in report.items)
    # contiguous: a channels-last output would change the metrics' summation order (last-bit differences)
    return y.float().clamp(0, 1).mul(255).round().div(255).contiguous(), failed


def evaluate_tasks(lq: LQSet, tasks: list[str], methods: list[Method], metrics: list[Metric],
                   identity: IdentityScorer | None, grid_faces: int = 4, progress: bool = True,
                   say: Callable[[str], None] | None = None) -> dict[str, TaskScores]:
    """Scores of every runnable method on every task (see TaskScores)."""
    from tqdm import tqdm

    runnable = [m for m in methods if m.runnable]
    names = lq.names
    out: dict[str, TaskScores] = {}
    bar = tqdm(total=len(tasks) * len(runnable) * len(names), unit="face", desc="eval", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        for task in tasks:
            ts = out[task] = TaskScores()
            keys = [m.name for m in metrics] + (["identity"] if identity is not None else [])
            for m in runnable:
                ts.scores[m.label] = {k: [] for k in keys}
                ts.failed[m.label] = 0
                ts.id_fallbacks[m.label] = 0
                ts.seconds[m.label] = 0.0
            for start in range(0, len(names), CHUNK):
                chunk = names[start:start + CHUNK]
                hq = read_faces(lq.root / "hq", chunk)
                x = read_faces(lq.root / TASKS[task].folder, chunk)
                if start < grid_faces:
                    k = grid_faces - start
                    ts.grid.setdefault("LQ", []).extend(to_uint8(x[:k]))
                    ts.grid.setdefault("GT", []).extend(to_uint8(hq[:k]))
                for m in runnable:
                    t0 = time.perf_counter()
                    y, failed = run_method(m, x)
                    ts.seconds[m.label] += time.perf_counter() - t0
                    ts.failed[m.label] += failed
                    row = ts.scores[m.label]
                    for metric in metrics:
                        row[metric.name].extend(metric.fn(y, hq).tolist())
                    if identity is not None:
                        dist, fallback = identity(y, hq, start)
                        row["identity"].extend(dist.tolist())
                        ts.id_fallbacks[m.label] += int(fallback[:, 0].sum())
                        if m is runnable[0]:
                            ts.id_gt_fallbacks += int(fallback[:, 1].sum())
                    if start < grid_faces and m.kind == "model":
                        ts.grid.setdefault(m.label, []).extend(to_uint8(y[:grid_faces - start]))
                    bar.update(len(chunk))
            if say is not None:
                for m in runnable:
                    if ts.failed[m.label]:
                        say(f"note {m.label}: {ts.failed[m.label]} face(s) of task {task} gave NaN/inf "
                            "and were scored unchanged")
    finally:
        bar.close()
    return out
