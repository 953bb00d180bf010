"""Peak-memory measurement for benchmarks: run one case in a fresh subprocess and report the peak
growth of its resident set during the measured call (CPU), or torch's peak allocation (CUDA).

On CPU, VmHWM is reset through /proc/self/clear_refs after the warm-up, so the peak is that of the
measured call alone; glibc's mmap threshold is pinned so freed tensors return to the OS and RSS
follows live memory. It counts everything the call allocates (activations kept for backward,
gradients, optimizer state created on first use, oneDNN scratch), not what existed before it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable

import torch

CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_growth_mib(run: Callable[[], None], device: str = "cpu") -> float:
    """MiB of peak memory growth during one ``run()`` (call it once before, as a warm-up)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = rss_kib("VmRSS")
    run()
    return (rss_kib("VmHWM") - before) / 1024


def run_child(script: str, case: dict, timeout: float | None = None, for_memory: bool = True) -> dict | None:
    """Run ``script case_json`` in a subprocess; its last stdout line is a JSON result (None on failure).

    ``for_memory`` pins glibc's mmap threshold (RSS then follows live memory) — which also makes
    every large allocation a fresh mmap and slows torch down: time in a child without it.
    """
    env = dict(os.environ, **CHILD_ENV) if for_memory else dict(os.environ)
    try:
        proc = subprocess.run([sys.executable, script, json.dumps(case)], capture_output=True, text=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])
