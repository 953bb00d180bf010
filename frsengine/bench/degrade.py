"""Faces/s of degradation synthesis at 128x128 (the full degradation + the four singles per face):
the per-image OpenCV/PIL/libjpeg backend (the baseline) vs the batched torch backend (CPU, CUDA)
vs the DALI pipeline, on the same synthetic faces, in the same process, rounds interleaved.

FLOPs per face are not given: degradation is pointwise work, resampling, small blur kernels and a
JPEG codec (memory-bound; OpenCV's and libjpeg's work is not visible to a FLOP counter).
"""
from __future__ import annotations

import importlib
import time

import numpy as np
import torch

from frsengine.bench.timing import interleaved

BASELINE = "opencv-cpu"
SIZE = 128


def faces(n: int, size: int = SIZE) -> torch.Tensor:
    """Synthetic uint8 faces (B, 3, size, size): smooth colour fields plus texture, seeded."""
    rng = np.random.default_rng(0)
    low = torch.from_numpy(rng.random((n, 3, size // 8, size // 8))).float()
    img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    img = img + 0.05 * torch.from_numpy(rng.standard_normal((n, 3, size, size))).float()
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def split_case(case: str) -> tuple[str, str]:
    backend, _, device = case.rpartition("-")
    return backend, device


def make_run(case: str, preset: str, batch: int, size: int = SIZE):
    """A zero-argument call that degrades one batch with ``case`` (``BACKEND-DEVICE``)."""
    from frsengine.degrade import Degrader

    backend, device = split_case(case)
    # DALI picks its own device (GPU when there is one) unless told; opencv has none.
    deg = Degrader(preset, backend, device=None if backend == "opencv" else device)
    hq = faces(batch, size)
    if device == "cuda":
        hq = hq.cuda()

    def run():
        out = deg(hq, seed=0)
        if device == "cuda":
            torch.cuda.synchronize()
        return out
    return run


def time_group(payload: dict) -> dict:
    """Child: ``{preset, batch, cases, rounds[, threads]}`` -> seconds per batch of every case
    (median of ``rounds`` interleaved calls after one warm-up call each)."""
    if payload.get("threads"):
        torch.set_num_threads(payload["threads"])
    runs, out = {}, {"cases": {}}
    for case in payload["cases"]:
        t0 = time.perf_counter()
        try:
            run = make_run(case, payload["preset"], payload["batch"], payload.get("size", SIZE))
            run()  # warm-up: pipelines, caches
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run here is one row
            out["cases"][case] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        runs[case] = run
        out["cases"][case] = {"warmup_s": time.perf_counter() - t0}
    for case, timing in interleaved(runs, payload["rounds"], payload.get("rounds_budget_s")).items():
        out["cases"][case].update(timing)
    return out


def memory_case(payload: dict) -> dict:
    """Child (allocator pinned): ``{preset, batch, case}`` -> peak MiB of one batch after the
    warm-up plus what the backend holds after it (pipelines, buffers, the input faces)."""
    from frsengine.bench.memory import peak_growth_mib, resident_mib

    if payload.get("threads"):
        torch.set_num_threads(payload["threads"])
    backend, device = split_case(payload["case"])
    from frsengine.degrade import BACKENDS

    importlib.import_module(BACKENDS[backend][0])  # module imports are not the case's memory
    base = resident_mib(device)
    run = make_run(payload["case"], payload["preset"], payload["batch"], payload.get("size", SIZE))
    run()
    resident = resident_mib(device) - base
    peak = peak_growth_mib(run, device)
    return {"step_peak_mib": peak, "resident_mib": resident, "peak_mib": resident + peak}
