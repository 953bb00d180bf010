"""Convolution work of one search step, plain vs fused, and the shortest time the fused step's
convolutions can take on this CPU: the bound on what fusing the work around them can give.

    .venv/bin/python benchmarks/conv_work.py                         # FRSNet supernet, batch 4, 128x128
    .venv/bin/python benchmarks/conv_work.py --models frsnet authors --batch 4

FLOPs of convolutions and matrix products (``frsengine.bench.flops``: 2 per multiply-add, counted
at 32x32 and scaled to the face size). The fused mixed op convolves inside a C++ op the counter
does not see, so its convolutions are counted through its plain PyTorch reference
(``FRSENGINE_KERNELS=reference``), whose forward convolves twice (the output, then the batch
statistics) and whose backward recomputes the outputs: per step (two forwards) that is 4 M more
than the C++ path, M = the mixed ops' convolutions in one forward = (reference-forward count -
C++-forward count) / 2. ``recompute`` adds one forward of them per backward (2 M per step).
The peak is :func:`frsengine.bench.machine.cpu_peak`'s estimate (cores x clock x FLOPs/cycle).
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

SIZE, COUNT_SIZE = 128, 32


def _count(name: str, batch: int, path: str, backend: str, what: str) -> int:
    """FLOPs of one step (``what="step"``) or one no-grad training-mode forward at COUNT_SIZE."""
    from frsengine.bench.flops import count_flops
    from frsengine.bench.search import make_step
    from frsengine.models.stats import example_inputs

    os.environ["FRSENGINE_KERNELS"] = backend
    model, step = make_step(name, batch, path, "cpu", size=COUNT_SIZE)
    if what == "step":
        step()  # optimizer state, lazy init: not counted
        return count_flops(step)
    args, kwargs = example_inputs(model, size=COUNT_SIZE, batch=batch, device="cpu")
    with torch.no_grad():
        return count_flops(lambda: model(*args, **kwargs))


def conv_work(name: str, batch: int) -> dict:
    """GFLOP per step at SIZE: the plain path, the fused path (keep, recompute)."""
    scale = (SIZE / COUNT_SIZE) ** 2 / 1e9
    plain = _count(name, batch, "reference", "reference", "step") * scale
    mixed = (_count(name, batch, "fused", "reference", "forward") - _count(name, batch, "fused", "cpp", "forward")) / 2
    keep = _count(name, batch, "fused", "reference", "step") * scale - 4 * mixed * scale
    return {"plain": plain, "fused": keep, "fused-recompute": keep + 2 * mixed * scale, "mixed_forward": mixed * scale}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["frsnet"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="cores the peak is estimated for (0: torch's threads)")
    args = p.parse_args(argv)
    from frsengine.bench.machine import cpu_peak
    from frsengine.ops import dispatch

    if "cpp" not in dispatch.available_backends("mixed_op", "cpu"):
        sys.exit("conv_work: needs the C++ extension (frsengine._C); run ./install.sh")
    torch.set_num_threads(args.threads or torch.get_num_threads())
    peak = cpu_peak(torch.get_num_threads())
    print(f"# peak {peak['fp32'] / 1e9:.0f} GFLOP/s fp32 ({peak['method']})" if peak.get("fp32")
          else f"# peak unknown ({peak['method']})")
    print(f"{'model':<10}{'batch':>6}  {'path':<17}{'GFLOP/step':>11}{'vs plain':>10}{'s at peak':>11}")
    for name in args.models:
        work = conv_work(name, args.batch)
        for path in ("plain", "fused", "fused-recompute"):
            at_peak = f"{work[path] * 1e9 / peak['fp32']:.2f}" if peak.get("fp32") else "n/a"
            print(f"{name:<10}{args.batch:>6}  {path:<17}{work[path]:>11.0f}{work[path] / work['plain']:>9.2f}x"
                  f"{at_peak:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
