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

``--measure PATH ...`` then times those paths of the same step in this process, the seconds their
convolutions take and what their forward saves for backward (:mod:`frsengine.bench.conv_time`),
with the practical fp32 rate of a matrix product: how far each path is from "nothing but its
convolutions", and the most it could gain over the plain step of the same run if all the rest
cost nothing (``bound``).

    .venv/bin/python benchmarks/conv_work.py --measure reference fused fused-balanced
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


WORK_OF = {"reference": "plain", "fused": "fused", "fused-recompute": "fused-recompute"}  # conv_work's keys


def print_split(name: str, batch: int, split: dict, peak: float, work: dict) -> None:
    plain = split.get("reference", {}).get("step_s")
    print(f"# measured: fp32 matrix product {peak / 1e9:.0f} GFLOP/s ({torch.get_num_threads()} threads)")
    print(f"{'model':<10}{'batch':>6}  {'path':<17}{'step s':>8}{'convs s':>9}{'rest s':>8}"
          f"{'conv GFLOP/s':>14}{'saved MiB':>11}{'vs plain':>10}{'bound':>8}")
    for path, r in split.items():
        rate = f"{work[WORK_OF[path]] / r['conv_s']:.0f}" if path in WORK_OF and r["conv_s"] > 0 else "n/a"
        vs = f"{plain / r['step_s']:.2f}x" if plain else "n/a"
        # what the path would gain if everything but its convolutions cost nothing
        bound = f"{plain / r['conv_s']:.2f}x" if plain and r["conv_s"] > 0 else "n/a"
        print(f"{name:<10}{batch:>6}  {path:<17}{r['step_s']:>8.2f}{r['conv_s']:>9.2f}"
              f"{r['step_s'] - r['conv_s']:>8.2f}{rate:>14}{r['saved_mib']:>11.0f}{vs:>10}{bound:>8}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["frsnet"])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="cores the peak is estimated for (0: torch's threads)")
    p.add_argument("--measure", nargs="*", default=[], metavar="PATH",
                   help="also time these search-step paths and their convolutions (frsengine.bench.search paths)")
    p.add_argument("--rounds", type=int, default=2, help="timed steps per measured path")
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
    works = {}
    for name in args.models:
        work = works[name] = conv_work(name, args.batch)
        for path in ("plain", "fused", "fused-recompute"):
            at_peak = f"{work[path] * 1e9 / peak['fp32']:.2f}" if peak.get("fp32") else "n/a"
            print(f"{name:<10}{args.batch:>6}  {path:<17}{work[path]:>11.0f}{work[path] / work['plain']:>9.2f}x"
                  f"{at_peak:>11}")
    if args.measure:
        from frsengine.bench.conv_time import matmul_peak, measure_split

        peak_measured = matmul_peak()
        for name in args.models:
            print_split(name, args.batch, measure_split(name, args.batch, args.measure, args.rounds), peak_measured,
                        works[name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
