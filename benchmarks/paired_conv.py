"""Width-paired convolutions (csrc/paired_conv.cpp) on and off, through the fused mixed op.

    .venv/bin/python benchmarks/paired_conv.py             # the FRSNet supernet's shapes with C <= 16
    .venv/bin/python benchmarks/paired_conv.py --rounds 20

One forward + backward (grad x and the weights, training-mode BN, channels_last x as the fused
supernet runs it) of the C++ CPU mixed op per shape, FRSENGINE_CONV_PAIRING=off / on / auto (the
default) interleaved round by round in one process (the kernels read the setting per call), median
milliseconds. Needs the C++ extension.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

# (N, C, H): the batched cells of the FRSNet supernet at batch 4 (N = 4 or 8 branches) at 128 and
# 64 px, and a C=16 control where pairing is slower.
SHAPES = [(4, 8, 128), (8, 8, 128), (8, 8, 64), (8, 4, 128), (8, 16, 64)]


def _case(n: int, c: int, h: int):
    from frsengine.ops.fused_mixed import run_mixed_op

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, h, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_()
    ws = [(torch.randn(c, c, k, k, generator=g) * 0.1).requires_grad_() for k in (3, 5, 7)]
    bn_w, bn_b = torch.ones(3, c, requires_grad=True), torch.zeros(3, c, requires_grad=True)
    alpha = torch.softmax(torch.randn(4, generator=g), 0).requires_grad_()
    grad = torch.randn(n, c, h, h, generator=g).contiguous(memory_format=torch.channels_last)

    def step():
        out = run_mixed_op(x, *ws, bn_w, bn_b, alpha, torch.zeros(3, c), torch.ones(3, c), True, 1e-5)[0]
        out.backward(grad)
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args(argv)
    from frsengine.ops import dispatch

    if "cpp" not in dispatch.available_backends("mixed_op", "cpu"):
        sys.exit("paired_conv: needs the C++ extension (frsengine._C); run ./install.sh")
    os.environ["FRSENGINE_KERNELS"] = "cpp"
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; fused mixed op fwd+bwd, ms (median)")
    print(f"{'N':>3}{'C':>4}{'H':>5}{'off':>9}{'on':>9}{'auto':>9}{'off/on':>8}")
    for n, c, h in SHAPES:
        step = _case(n, c, h)
        times = {"off": [], "on": [], "auto": []}
        for mode in times:  # warm-up: oneDNN builds its kernels for each shape once
            os.environ["FRSENGINE_CONV_PAIRING"] = mode
            step()
        for _ in range(args.rounds):
            for mode in times:
                os.environ["FRSENGINE_CONV_PAIRING"] = mode
                t = time.perf_counter()
                step()
                times[mode].append(time.perf_counter() - t)
        off, on, auto = (statistics.median(times[m]) * 1e3 for m in ("off", "on", "auto"))
        print(f"{n:>3}{c:>4}{h:>5}{off:>9.1f}{on:>9.1f}{auto:>9.1f}{off / on:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
