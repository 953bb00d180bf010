"""One search step (weight step, then architecture step), plain vs fused path, in the same run.

    .venv/bin/python -m pytest benchmarks/test_bench_search_step.py
    FRS_BENCH_FULL=1 .venv/bin/python -m pytest benchmarks/test_bench_search_step.py   # + paper sizes
    FRS_BENCH_DEVICE=cuda ...                                                         # on a GPU machine

The step and the paths are frsengine.bench.search's (read its docstring); benchmarks/search_step.py
and ``frsengine bench --suites search`` also measure peak memory, each case in its own process.
By default the CPU-sized ``frsnet-small`` runs at batch 1/4; FRS_BENCH_FULL=1 adds the authors'
search model and the paper-size FRSNet supernet at batch 1/4 (5-25 s per step on a 2-core CPU).
"""
from __future__ import annotations

import os

import pytest

from frsengine.bench.search import PATHS, make_step

DEVICE = os.environ.get("FRS_BENCH_DEVICE", "cpu")
FULL = os.environ.get("FRS_BENCH_FULL") == "1"
full_only = [pytest.mark.slow,
             pytest.mark.skipif(not FULL, reason="paper-size supernets: set FRS_BENCH_FULL=1")]

CASES = [pytest.param("frsnet-small", b, id=f"frsnet-small-b{b}") for b in (1, 4)] + [
    pytest.param(m, b, id=f"{m}-b{b}", marks=full_only) for m in ("authors", "frsnet") for b in (1, 4)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model,batch", CASES)
def test_search_step(benchmark, report, model, batch, path):
    net, step = make_step(model, batch, path, DEVICE)
    step()   # warm-up: optimizer state, primitive caches
    benchmark.group = f"search step {model}, batch {batch}, 128x128, {DEVICE}"
    report(benchmark, items=batch, baseline=(path == "reference"))
    benchmark.pedantic(step, rounds=3, iterations=1)
    assert all(p.grad is not None for p in net.arch_parameters())
