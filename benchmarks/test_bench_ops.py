"""Per-op micro-benchmarks of the fused search ops, fused vs the plain PyTorch path in the same run.

    .venv/bin/python -m pytest benchmarks/test_bench_ops.py

mixed op: a chain of EDGES supernet edges (each skip + ConvBR 3x3/5x5/7x7, softmax-alpha sum; a
chain, as the blocks of a cell feed each other, so activations kept for backward accumulate as in
a supernet), forward + backward in training mode, batch 4. Baseline: ``frsengine.nas.ops.MixedOp``
under autograd. Fused: the ``frsengine::mixed_op`` custom op with the C++ kernels, with the
automatic conv strategy and with each strategy forced (the measurement behind
conv_stack.STACKED_MAX_CHANNELS); ``fused-nhwc``: the same chain on a channels_last input, as the
fused supernet runs it on a CPU (the kernels then run NHWC, csrc/mixed_op_nhwc.cpp).
beta aggregation: resample up to three inputs to the node size and take the beta-weighted sum,
forward + backward. Baseline: F.interpolate(align_corners=True) + sum under autograd.

cell: one grid node of the paper-size upsampling space (3 branches, H_{l-2}, B=3), forward +
backward in training mode, batch 4. Baseline: the plain ``SearchCell`` + ``aggregate_branches``;
fused: ``frsengine.nas.fused.fused_node`` (keep and recompute).

``-bf16`` variants run the same under ``torch.autocast(cpu, bfloat16)`` (CPUs with native bf16 only):
the plain modules as autocast runs them, the fused op with its convolutions in bf16.

Peak memory (``peak_mib``): peak resident-set growth of one forward + backward, measured in a fresh
subprocess after inputs are built and one warm-up call ran (benchmarks/peak.py).

On a GPU (``FRS_BENCH_DEVICE=cuda``) the fused variants are the CUDA and the Triton kernels
(``fused-cuda``, ``fused-triton``), each call ends with a synchronisation, and the peak is torch's
peak allocation during one call, in this process.
"""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from frsengine.nas.cell import SearchCell, aggregate_branches
from frsengine.nas.fused import fused_node
from frsengine.nas.ops import MixedOp, get_op_set
from frsengine.ops import dispatch
from frsengine.ops.beta_aggregation import aggregate
from frsengine.ops.fused_mixed import mixed_op_module_forward
from frsengine.train.precision import cpu_has_native_bf16

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peak import peak_growth_mib, run_child  # noqa: E402

BATCH = 4
EDGES = 4
DEVICE = torch.device(os.environ.get("FRS_BENCH_DEVICE", "cpu"))
CUDA = DEVICE.type == "cuda"
if CUDA and not torch.cuda.is_available():
    pytest.skip("FRS_BENCH_DEVICE=cuda but torch sees no CUDA device here", allow_module_level=True)
MIXED_SHAPES = [(8, 128), (16, 64), (32, 64), (64, 32)]   # (channels, size)
# (channels, node size, input sizes): a border node with two arrows, inner nodes with three.
AGG_SHAPES = [(24, 128, (64, 128)), (48, 64, (32, 64, 128)), (192, 16, (8, 16, 32))]
CPP = dispatch.unavailable_reason("cpp", torch.device("cpu")) is None
# The fused variants of this run: the C++ kernels on a CPU ("fused"), the CUDA and Triton ones on a GPU.
FUSED = ([f"fused-{b}" for b in ("cuda", "triton") if dispatch.unavailable_reason(b, DEVICE) is None] if CUDA
         else (["fused"] if CPP else []))


def _use_backend(variant: str) -> None:
    """Force the fused variant's implementation (through os.environ: a peak subprocess inherits it)."""
    os.environ[dispatch.ENV_VAR] = next((b for b in ("cuda", "triton") if f"-{b}" in variant), "cpp")


def _timed(run):
    """``run`` followed by a synchronisation on a GPU (a call's time is its kernels' time)."""
    if not CUDA:
        return run

    def synced():
        run()
        torch.cuda.synchronize()
    return synced


def _mixed_case(channels: int, size: int, variant: str):
    """A zero-argument fwd+bwd closure for one mixed-op configuration."""
    torch.manual_seed(0)
    modules = [MixedOp(channels, get_op_set("default")).to(DEVICE).train() for _ in range(EDGES)]
    fmt = torch.channels_last if variant == "fused-nhwc" else torch.contiguous_format
    x = torch.randn(BATCH, channels, size, size, device=DEVICE).contiguous(memory_format=fmt).requires_grad_()
    alpha = torch.randn(EDGES, 4, device=DEVICE, requires_grad=True)
    params = [x, alpha, *(p for m in modules for p in m.parameters())]
    if variant != "plain":
        _use_backend(variant)
        conv = variant.removeprefix("fused-")
        if conv in ("stacked", "separate"):
            os.environ["FRSENGINE_MIXED_CONV"] = conv

    def run():
        weights = F.softmax(alpha, -1)
        h = x
        for m, w in zip(modules, weights):
            h = m(h, w) if variant == "plain" else mixed_op_module_forward(m, h, w)
        torch.autograd.grad(h, params, torch.ones_like(h))
    return _timed(run)


def _agg_case(channels: int, size: int, srcs, variant: str):
    torch.manual_seed(0)
    xs = [torch.randn(BATCH, channels, s, s, device=DEVICE, requires_grad=True) for s in srcs]
    beta = torch.rand(len(xs), device=DEVICE, requires_grad=True)
    if variant != "plain":
        _use_backend(variant)

    def forward():
        if variant != "plain":
            return aggregate(xs, beta, (size, size))
        out = None
        for x, b in zip(xs, beta):
            r = x if x.shape[-1] == size else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
            out = b * r if out is None else out + b * r
        return out

    def run():
        out = forward()
        torch.autograd.grad(out, [*xs, beta], torch.ones_like(out))
    return _timed(run)


# (level size, per-block width, branch input (channels, size) by name): nodes of the paper-size
# upsampling space (filter 64, levels 16/32/64/128 px, B=3, block multiplier 3).
CELL_SHAPES = [(32, 32, {"down": (48, 64), "same": (96, 32), "up": (192, 16)}),
               (128, 8, {"same": (24, 128), "up": (48, 64)})]


def _cell_case(size: int, width: int, branches: dict, variant: str):
    torch.manual_seed(0)
    cell = SearchCell(3, 3, width, 3 * width, {b: c for b, (c, _) in branches.items()},
                      get_op_set("default")).to(DEVICE).train()
    pp = torch.randn(BATCH, 3 * width, size, size, device=DEVICE, requires_grad=True)
    xs = {b: torch.randn(BATCH, c, s, s, device=DEVICE, requires_grad=True) for b, (c, s) in branches.items()}
    alphas = torch.randn(9, 4, device=DEVICE, requires_grad=True)
    betas = torch.rand(len(xs), device=DEVICE, requires_grad=True)
    params = [pp, alphas, betas, *xs.values(), *cell.parameters()]
    if variant != "plain":
        _use_backend(variant)

    def run():
        a, bs = F.softmax(alphas, -1), list(betas)
        if variant == "plain":
            out = aggregate_branches(cell(pp, xs, a, (size, size)), bs)
        else:
            out = fused_node(cell, pp, xs, a, bs, (size, size), keep="-keep" in variant)
        torch.autograd.grad(out, params, torch.ones_like(out))
    return _timed(run)


def _build(case: dict):
    variant = case.get("variant", "")
    if variant.endswith("-bf16"):
        run = _build({**case, "variant": variant.removesuffix("-bf16")})

        def run_bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                run()
        return run_bf16
    if case["op"] == "mixed":
        return _mixed_case(case["channels"], case["size"], case["variant"])
    if case["op"] == "cell":
        return _cell_case(case["size"], case["width"], case["branches"], case["variant"])
    return _agg_case(case["channels"], case["size"], case["srcs"], case["variant"])


def _peak_child(case: dict) -> dict:
    """Runs in the subprocess: MiB of peak RSS growth during one call."""
    run = _build(case)
    run()  # warm-up: lazy initialisation, oneDNN primitive caches
    return {"peak_mib": peak_growth_mib(run)}


def peak_mib(case: dict) -> float | None:
    if CUDA:   # torch's allocator counts exactly: no process of its own
        run = _build(case)
        run()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    result = run_child(__file__, case)
    return None if result is None else result["peak_mib"]


BF16 = cpu_has_native_bf16()
if CUDA:
    MIXED_VARIANTS = AGG_VARIANTS = ["plain", *FUSED]
    CELL_VARIANTS = ["plain", *(f"{f}-{mode}" for f in FUSED for mode in ("keep", "recompute"))]
else:
    MIXED_VARIANTS = (["plain"] + (["fused", "fused-nhwc", "fused-stacked", "fused-separate"] if CPP else [])
                      + (["plain-bf16"] + (["fused-bf16"] if CPP else []) if BF16 else []))
    AGG_VARIANTS = ["plain"] + (["fused"] if CPP else [])
    CELL_VARIANTS = (["plain"] + (["fused-keep", "fused-recompute"] if CPP else [])
                     + (["plain-bf16"] + (["fused-keep-bf16", "fused-recompute-bf16"] if CPP else []) if BF16 else []))


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch):
    # The cases set FRSENGINE_KERNELS / FRSENGINE_MIXED_CONV through os.environ (so the peak
    # subprocess inherits nothing stale): monkeypatch restores both afterwards.
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    monkeypatch.delenv("FRSENGINE_MIXED_CONV", raising=False)


@pytest.mark.parametrize("variant", MIXED_VARIANTS)
@pytest.mark.parametrize("channels,size", MIXED_SHAPES, ids=[f"C{c}-{s}px" for c, s in MIXED_SHAPES])
def test_mixed_op_fwd_bwd(benchmark, report, channels, size, variant):
    case = {"op": "mixed", "channels": channels, "size": size, "variant": variant}
    run = _build(case)
    run()
    benchmark.group = f"mixed op fwd+bwd, {EDGES} chained edges: C={channels}, {size}x{size}, batch {BATCH}"
    report(benchmark, items=BATCH, baseline=(variant == "plain"), peak_mib=peak_mib(case))
    benchmark.pedantic(run, rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("variant", AGG_VARIANTS)
@pytest.mark.parametrize("channels,size,srcs", AGG_SHAPES, ids=[f"C{c}-{s}px-{len(r)}in" for c, s, r in AGG_SHAPES])
def test_beta_aggregation_fwd_bwd(benchmark, report, channels, size, srcs, variant):
    case = {"op": "agg", "channels": channels, "size": size, "srcs": list(srcs), "variant": variant}
    run = _build(case)
    run()
    benchmark.group = f"beta aggregation fwd+bwd: C={channels}, {size}x{size} from {srcs}, batch {BATCH}"
    report(benchmark, items=BATCH, baseline=(variant == "plain"), peak_mib=peak_mib(case))
    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("variant", CELL_VARIANTS)
@pytest.mark.parametrize("size,width,branches", CELL_SHAPES, ids=[f"{s}px-{len(b)}branches" for s, _, b in CELL_SHAPES])
def test_cell_fwd_bwd(benchmark, report, size, width, branches, variant):
    case = {"op": "cell", "size": size, "width": width, "branches": branches, "variant": variant}
    run = _build(case)
    run()
    benchmark.group = f"search cell fwd+bwd: {size}x{size}, width {width}, {len(branches)} branches, batch {BATCH}"
    report(benchmark, items=BATCH, baseline=(variant == "plain"), peak_mib=peak_mib(case))
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


if __name__ == "__main__":  # the peak-memory subprocess
    print(json.dumps(_peak_child(json.loads(sys.argv[1]))))
