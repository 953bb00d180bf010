"""One search step of the plain-PyTorch FRSNet supernet (the baseline fused kernels must beat).

A step = weight phase (forward, backward, SGD step on w) then architecture phase (forward,
backward, Adam step on alpha/beta), first-order as Algorithm 1, 128x128 input, training-mode BN.
The arch phase runs a full backward (weight gradients included, as the authors' code does); skipping
those is one of the savings the fused path is measured on.

    .venv/bin/python -m pytest benchmarks/test_bench_search_step.py --benchmark-enable
    FRS_BENCH_FULL=1 ... -m slow                      # the paper-size supernet (5-17 s per step on CPU)
    FRS_BENCH_DEVICE=cuda ...                         # on a GPU machine

By default the CPU-sized ``small`` preset runs at batch 1/2/4; the paper-size (``default``) cases
are marked slow and skipped unless FRS_BENCH_FULL=1.
"""
from __future__ import annotations

import os
import resource

import pytest
import torch
import torch.nn.functional as F

from frsengine.models import build_supernet

DEVICE = os.environ.get("FRS_BENCH_DEVICE", "cpu")
FULL = os.environ.get("FRS_BENCH_FULL") == "1"
full_only = [pytest.mark.slow,
             pytest.mark.skipif(not FULL, reason="paper-size supernet: set FRS_BENCH_FULL=1 (GPU work)")]

CASES = [pytest.param("small", b, id=f"small-b{b}") for b in (1, 2, 4)] + [
    pytest.param("default", b, id=f"default-b{b}", marks=full_only) for b in (1, 2, 4)]


def make_step(preset: str, batch: int, size: int = 128):
    torch.manual_seed(0)
    model = build_supernet("frsnet", preset).to(DEVICE).train()
    # Paper Sec. 4.2: SGD (lr 0.025) for w, Adam (lr 1e-4, weight decay 1e-3) for alpha/beta.
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    g = torch.Generator(device="cpu").manual_seed(1)
    lq_a, hq_a, lq_b, hq_b = (torch.rand(batch, 3, size, size, generator=g).to(DEVICE) for _ in range(4))

    def step():
        w_opt.zero_grad(set_to_none=True)
        F.l1_loss(model(lq_a), hq_a).backward()
        w_opt.step()
        a_opt.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        F.l1_loss(model(lq_b), hq_b).backward()
        a_opt.step()
        if DEVICE.startswith("cuda"):
            torch.cuda.synchronize()

    return model, step


@pytest.mark.parametrize("preset,batch", CASES)
def test_search_step(benchmark, preset, batch):
    model, step = make_step(preset, batch)
    step()   # warm-up: allocator and first-call overheads
    if DEVICE.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(step, rounds=3, iterations=1)
    benchmark.extra_info.update({
        "device": DEVICE, "preset": preset, "batch": batch, "size": 128,
        "threads": torch.get_num_threads(),
        "weights": sum(p.numel() for p in model.weight_parameters()),
        "arch": sum(p.numel() for p in model.arch_parameters()),
        "peak_rss_gib_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        **({"peak_cuda_gib": torch.cuda.max_memory_allocated() / 2**30} if DEVICE.startswith("cuda") else {}),
    })
    assert all(p.grad is not None for p in model.arch_parameters())
