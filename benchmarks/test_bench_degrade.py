"""Images/s of 128x128 degradation synthesis (full + the four singles): batched torch vs
the per-image OpenCV/PIL/libjpeg baseline (and DALI, and CUDA where present).

    .venv/bin/python -m pytest benchmarks/test_bench_degrade.py
"""
import importlib.util

import numpy as np
import pytest
import torch

from frsengine.degrade import Degrader

BATCH = 64


def faces(n: int = BATCH, size: int = 128) -> torch.Tensor:
    rng = np.random.default_rng(0)
    low = torch.from_numpy(rng.random((n, 3, size // 8, size // 8))).float()
    img = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    img = img + 0.05 * torch.from_numpy(rng.standard_normal((n, 3, size, size))).float()
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


CASES = [("opencv", "cpu"), ("torch", "cpu")]
if importlib.util.find_spec("nvidia.dali") is not None:
    CASES.append(("dali", "cpu"))
if torch.cuda.is_available():
    CASES += [("torch", "cuda")] + ([("dali", "cuda")] if importlib.util.find_spec("nvidia.dali") else [])


@pytest.mark.parametrize("preset", ["paper", "reference"])
@pytest.mark.parametrize("backend,device", CASES, ids=[f"{b}-{d}" for b, d in CASES])
def test_degrade_throughput(benchmark, report, preset, backend, device):
    hq = faces()
    if backend == "dali":
        # DALI picks its own device: GPU when there is one, unless told "cpu".
        deg = Degrader(preset, backend, device=device)
    else:
        deg = Degrader(preset, backend, device=device if backend == "torch" else None)
    if device == "cuda":
        hq = hq.cuda()

    def run():
        out = deg(hq, seed=0)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    run()  # warm-up: caches, pipelines
    benchmark.group = f"degrade {preset}: 128x128, full + 4 singles, batch {BATCH}"
    report(benchmark, items=BATCH, baseline=(backend == "opencv"))
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
