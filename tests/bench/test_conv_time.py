"""frsengine.bench.conv_time: the convolution seconds of a call, and of a search step's paths."""
import os

import torch
import torch.nn.functional as F

from frsengine.bench.conv_time import conv_kernel_seconds, conv_seconds, matmul_peak, measure_split, saved_mib


def test_conv_seconds_counts_convolutions_forward_and_backward_only():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 32, 32, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    assert conv_seconds(lambda: (x * 2 + 1).sum().backward()) == 0.0
    forward = conv_seconds(lambda: F.conv2d(x, w, padding=1))
    assert forward > 0.0
    kernels = conv_kernel_seconds(lambda: F.conv2d(x, w, padding=1).sum().backward())
    # the backward's kernel beside the forward's (oneDNN's or ATen's own, depending on the build)
    assert "aten::convolution_backward" in kernels and len(kernels) >= 2, kernels


def test_matmul_peak_is_a_rate():
    assert matmul_peak(n=128, repeats=2) > 1e6


def test_measure_split_of_a_tiny_supernet(monkeypatch):
    monkeypatch.setenv("FRSENGINE_KERNELS", "reference")   # restored afterwards, not used inside
    split = measure_split("frsnet-tiny", 1, ["reference", "fused"], rounds=1, size=16)
    assert set(split) == {"reference", "fused"}
    for r in split.values():
        assert 0.0 < r["conv_s"] < r["step_s"] * 2   # a profiled step runs slower than a timed one
        assert r["saved_mib"] > 0
    assert os.environ["FRSENGINE_KERNELS"] == "reference"


def test_saved_mib_orders_the_fused_modes():
    """recompute keeps no conv outputs, keep keeps three per mixed op: recompute < keep."""
    keep, recompute = (saved_mib("frsnet-tiny", 2, p, size=32) for p in ("fused", "fused-recompute"))
    assert 0 < recompute < keep
