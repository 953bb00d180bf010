"""Images/s of 128x128 degradation synthesis (full + the four singles): batched torch vs
the per-image OpenCV/PIL/libjpeg baseline (and DALI, and CUDA where present).

    .venv/bin/python -m pytest benchmarks/test_bench_degrade.py
"""
import importlib.util

import pytest
import torch

from frsengine.bench.degrade import faces as _faces
from frsengine.bench.degrade import make_run

BATCH = 64


def faces(n: int = BATCH, size: int = 128) -> torch.Tensor:
    return _faces(n, size)


CASES = [("opencv", "cpu"), ("torch", "cpu")]
if importlib.util.find_spec("nvidia.dali") is not None:
    CASES.append(("dali", "cpu"))
if torch.cuda.is_available():
    CASES += [("torch", "cuda")] + ([("dali", "cuda")] if importlib.util.find_spec("nvidia.dali") else [])


@pytest.mark.parametrize("preset", ["paper", "reference"])
@pytest.mark.parametrize("backend,device", CASES, ids=[f"{b}-{d}" for b, d in CASES])
def test_degrade_throughput(benchmark, report, preset, backend, device):
    run = make_run(f"{backend}-{device}", preset, BATCH)   # frsengine.bench.degrade, as `frsengine bench` runs it
    run()  # warm-up: caches, pipelines
    benchmark.group = f"degrade {preset}: 128x128, full + 4 singles, batch {BATCH}"
    report(benchmark, items=BATCH, baseline=(backend == "opencv"))
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


class _Faces(torch.utils.data.Dataset):
    """In-memory HQ faces, so the loader benchmark measures degradation, not decoding."""

    def __init__(self, n: int):
        self.hq = faces(n)

    def __len__(self):
        return len(self.hq)

    def __getitem__(self, i):
        return self.hq[i], i


LOADER_CASES = [("opencv", "main", 0), ("torch", "main", 0), ("opencv", "workers", 2), ("torch", "workers", 2)]


@pytest.mark.parametrize("backend,where,workers", LOADER_CASES,
                         ids=[f"{b}-{w}{n or ''}" for b, w, n in LOADER_CASES])
def test_loader_throughput(benchmark, report, backend, where, workers):
    from frsengine.data import DegradedLoader
    from frsengine.degrade import Degrader

    n = 4 * BATCH
    loader = DegradedLoader(_Faces(n), Degrader("paper", backend), batch_size=BATCH, num_workers=workers,
                            degrade_in=where)

    def epoch():
        return sum(len(b.params) for b in loader)

    epoch()
    benchmark.group = f"DegradedLoader paper: {n} faces 128x128 per epoch, batch {BATCH} (CPU)"
    report(benchmark, items=n, baseline=(backend == "opencv" and where == "main"))
    benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=0)
