"""Peak-memory measurement: the peak growth of the resident set during one call (CPU), or torch's
peak allocation (CUDA).

On CPU, VmHWM is reset through /proc/self/clear_refs after the warm-up, so the peak is that of the
measured call alone. That only means something when freed memory goes back to the OS, so memory is
measured in a process whose glibc mmap threshold is pinned (:func:`pin_allocator`, or
:data:`CHILD_ENV` for a fresh process): every large block is then its own mmap and RSS follows
live memory. The same setting makes every large allocation a fresh mmap and slows torch down, so
**time in one process and memory in another** (:mod:`frsengine.bench.child` does both).
The growth counts everything the call allocates (activations kept for backward, gradients,
optimizer state created on first use, oneDNN scratch), not what existed before it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
from typing import Callable

CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # glibc <malloc.h>


def pin_allocator() -> bool:
    """In this process, what :data:`CHILD_ENV` does at start-up: blocks >= 64 KiB are mmapped and
    freed memory is trimmed at once. False where glibc's mallopt is not there (then the
    figures are upper bounds of the call's own growth only where nothing was freed before)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 65536)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 0))
    except (OSError, AttributeError):
        return False


def rss_kib(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def resident_mib(device: str = "cpu") -> float:
    """Memory held now: torch's allocation on CUDA; on CPU the *anonymous* resident set (heap,
    tensors, JIT-compiled kernels), not the pages of shared libraries: a forked child maps those
    again as it first touches them, which is no memory the measured case costs."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.memory_allocated() / 2**20
    try:
        return rss_kib("RssAnon") / 1024
    except StopIteration:  # kernels before 4.5
        return rss_kib("VmRSS") / 1024


def peak_growth_mib(run: Callable[[], object], device: str = "cpu") -> float:
    """MiB of peak memory growth during one ``run()`` (call it once before, as a warm-up)."""
    if device.startswith("cuda"):
        import torch

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
    """Run ``python script case_json`` in a fresh process; its last stdout line is a JSON result
    (None on failure). ``for_memory`` starts it with :data:`CHILD_ENV` (time without it)."""
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
