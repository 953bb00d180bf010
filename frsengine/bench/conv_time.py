"""How much of a search step is convolution: the floor the other work of a path sits on.

:func:`measure_split` times search-step paths (rounds interleaved, as :mod:`frsengine.bench.search`
does) and profiles one more step of each for the seconds its convolution kernels take, forward and
backward. ``plain step / convolution seconds`` is then the most a path could gain over the plain
step if everything but its convolutions cost nothing. :func:`matmul_peak` measures the CPU's
practical fp32 rate, against which the convolutions' own rate can be read; :func:`saved_mib`
what a path's forward keeps for its backward.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import torch

# The ATen kernels that convolve (a backward call computes both gradients inside one).
CONV_KERNELS = frozenset({"aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d_forward",
                          "aten::_slow_conv2d_backward", "aten::_nnpack_spatial_convolution",
                          "aten::slow_conv_dilated2d", "aten::cudnn_convolution"})


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Practical fp32 FLOP/s of this CPU with torch's threads: an n^3 matrix product (median of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def conv_kernel_seconds(fn: Callable[[], object]) -> dict[str, float]:
    """``{kernel: seconds}`` one call of ``fn`` spends in each convolution kernel (torch.profiler
    self time, CPU)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages() if e.key in CONV_KERNELS}


def conv_seconds(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` spends in convolution kernels, forward and backward."""
    return sum(conv_kernel_seconds(fn).values())


def saved_mib(name: str, batch: int, path: str, size: int = 128) -> float:
    """MiB of the tensors autograd saves in one training-mode forward of model ``name`` on
    ``path`` (distinct storages, all alive until the backward): the activations a step holds."""
    from frsengine.bench.search import make_step, split_path
    from frsengine.models.stats import example_inputs
    from frsengine.train.precision import autocast

    model, _ = make_step(name, batch, path, "cpu", size=size)   # the model exactly as the path runs it
    bf16 = split_path(path)[1]   # the weight step's precision
    args, kwargs = example_inputs(model, size=size, batch=batch, device="cpu")
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast("bf16" if bf16 else "fp32",
                                                                             torch.device("cpu")):
        out = model(*args, **kwargs)
    del out
    return sum(storages.values()) / 2**20


def measure_split(name: str, batch: int, paths: list[str], rounds: int = 2, size: int = 128) -> dict:
    """``{path: {"step_s", "conv_s", "saved_mib"}}`` of a CPU search step of model ``name``: the
    median of ``rounds`` interleaved steps after one warm-up step each, the convolution seconds of
    one profiled step, and :func:`saved_mib`. Mixed ops run on the default (fastest) implementation."""
    from frsengine.bench.search import make_step
    from frsengine.bench.timing import interleaved
    from frsengine.ops.dispatch import ENV_VAR

    forced = os.environ.pop(ENV_VAR, None)
    try:
        steps = {}
        for path in paths:
            steps[path] = make_step(name, batch, path, "cpu", size=size)[1]
            steps[path]()
        timing = interleaved(steps, rounds)
        out = {p: {"step_s": timing[p]["seconds"], "conv_s": conv_seconds(step)} for p, step in steps.items()}
        steps.clear()
        for p in paths:
            out[p]["saved_mib"] = saved_mib(name, batch, p, size)
        return out
    finally:
        if forced is not None:
            os.environ[ENV_VAR] = forced
