"""One full search step (weight step, then architecture step): the plain path vs the fused paths.

A step is Algorithm 1's first-order alternation at 128x128: forward/backward/SGD (momentum 0.9,
lr 0.025) on the weights with an L1 loss on one batch, then forward/backward/Adam (lr 1e-4, weight
decay 1e-3) on alpha/beta with another batch; BN in training mode.

- ``reference``: the plain supernet exactly as the authors run it (per-branch cells, shared edges
  recomputed per branch, and a full backward in the architecture step, weight gradients included).
- ``fused``: ``frsengine.nas.fused`` (batched branches, shared H_{l-2} edges once, 1x1 convs at the
  lower resolution, aggregation folded into the concat, fused mixed-op kernels keeping their conv
  outputs) and the architecture step with frozen weights (no weight gradients).
- ``fused-recompute``: the same, mixed ops recompute their convolutions in backward.
- ``fused-checkpoint``: the same, every grid node under activation checkpointing (least memory).
- ``fused-balanced``: the same, nodes at the two finest resolutions recompute, the others keep.
- ``PATH-bf16`` (``reference-bf16``, ``fused-bf16``, ``fused-recompute-bf16``): both steps' forward
  passes under ``torch.autocast(bfloat16)`` (the plain path as autocast runs it; the fused mixed ops
  run only their convolutions in bf16); ``PATH-bf16w``: the weight step only, the architecture step
  in float32 (``model.precision=bf16`` with ``arch.precision=fp32`` in a search run).
- ``PATH-graph`` (``reference-graph``, ``fused-graph``, ...; CUDA only, float32): the same step
  captured into one CUDA graph after three eager warm-up steps and replayed
  (:mod:`frsengine.train.cuda_graph`): what is left once no kernel is launched from the host.

Models: ``authors`` = the authors' search model (frsengine.models.prior_search: fixed upsampler from
configs/genotypes/frsnet-seed0.json + one searched parsing-prior grid), ``frsnet`` / ``mfpsnet`` =
the paper-size supernets, ``NAME-PRESET`` (``frsnet-small``, ``mfpsnet-tiny``...) = other presets.

:func:`time_group` times the paths of one (model, batch) in one process, rounds interleaved (one
step of each path per round), so every path sees the same background load;
:func:`memory_case` measures one path's peak memory in a process of its own
(:mod:`frsengine.bench.memory`). Both run in child processes (:mod:`frsengine.bench.child`).
"""
from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from frsengine.bench.timing import interleaved

ROOT = Path(__file__).resolve().parents[2]
PATHS = ("reference", "fused", "fused-recompute", "fused-checkpoint", "fused-balanced")
LOW_PRECISION_PATHS = ("reference-bf16", "fused-bf16", "fused-recompute-bf16", "fused-checkpoint-bf16", "fused-bf16w",
                       "fused-recompute-bf16w")
FUSED_MODE = {"fused": "keep", "fused-recompute": "recompute", "fused-checkpoint": "checkpoint",
              "fused-balanced": "balanced"}
GRAPH_PATHS = tuple(f"{p}-graph" for p in PATHS)   # CUDA only: the whole step replayed as one CUDA graph
ALL_PATHS = PATHS + LOW_PRECISION_PATHS + GRAPH_PATHS
BASELINE = "reference"
SIZE = 128


def precision_of(path: str) -> str:
    """The precision of a path's convolutions, for the peak-FLOP/s column ('bf16' when any step is)."""
    return "bf16" if split_path(path)[1] else "fp32"


def split_graph(path: str) -> tuple[str, bool]:
    """'fused-graph' -> ('fused', True): the path, and whether its step is replayed as a CUDA graph."""
    return (path[: -len("-graph")], True) if path.endswith("-graph") else (path, False)


def split_path(path: str) -> tuple[str, bool, bool]:
    """'fused-bf16w' -> ('fused', weight step in bf16, architecture step in bf16)."""
    for suffix, arch in (("-bf16w", False), ("-bf16", True)):
        if path.endswith(suffix):
            return path[: -len(suffix)], True, arch
    return path, False, False


def build_model(name: str):
    from frsengine.models import build_supernet
    from frsengine.models.prior_search import PriorSearchNet
    from frsengine.nas.genotype import load_genotype

    if name == "authors":
        return PriorSearchNet(load_genotype(ROOT / "configs" / "genotypes" / "frsnet-seed0.json"))
    network, _, preset = name.partition("-")
    return build_supernet(network, preset or "default")


def make_step(name: str, batch: int, path: str, device: str = "cpu", size: int = SIZE):
    """(model, step) for one configuration: step() runs one weight step and one architecture step."""
    from frsengine.models.stats import example_inputs
    from frsengine.nas.fused import frozen, use_fused_search

    from frsengine.train.precision import autocast

    unsplit, graph = split_graph(path)
    base, weight_bf16, arch_bf16 = split_path(unsplit)
    if base not in PATHS or (graph and unsplit != base):
        raise ValueError(f"unknown path {path!r}; known: {', '.join(ALL_PATHS)}")
    if graph and not device.startswith("cuda"):
        raise ValueError(f"path {path!r}: CUDA graphs need a CUDA device, got {device!r}")
    torch.manual_seed(0)
    model = build_model(name).to(device).train()
    if base != "reference" and use_fused_search(model, mode=FUSED_MODE[base]) == 0:
        raise RuntimeError(f"{name}: no search space could be fused")
    w_params, a_params = model.weight_parameters(), model.arch_parameters()
    w_opt = torch.optim.SGD(w_params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    # capturable: Adam keeps its step count on the device, so a CUDA graph can capture its step.
    a_opt = torch.optim.Adam(a_params, lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-3, capturable=graph)
    g = torch.Generator().manual_seed(1)

    def batch_inputs():
        args, kwargs = example_inputs(model, size=size, batch=batch, device="cpu")
        args = tuple(torch.rand(a.shape, generator=g).to(device) for a in args)
        kwargs = {k: {n: torch.rand(t.shape, generator=g).to(device) for n, t in v.items()} for k, v in kwargs.items()}
        return args, kwargs, torch.rand(args[0].shape, generator=g).to(device)

    data_a, data_b = batch_inputs(), batch_inputs()

    def loss(data, bf16):
        args, kwargs, target = data
        with autocast("bf16" if bf16 else "fp32", torch.device(device)):
            out = model(*args, **kwargs)
            return sum(F.l1_loss(o.float(), target) for o in (out if isinstance(out, tuple) else (out,)))

    def body():
        w_opt.zero_grad(set_to_none=True)
        loss(data_a, weight_bf16).backward()
        w_opt.step()
        a_opt.zero_grad(set_to_none=True)
        if base == "reference":
            model.zero_grad(set_to_none=True)
            loss(data_b, arch_bf16).backward()        # the authors' full backward (weight grads computed, unused)
        else:
            with frozen(w_params):
                loss(data_b, arch_bf16).backward()
        a_opt.step()

    run = body
    if graph:
        from frsengine.train.cuda_graph import capture_step

        def run():   # captured on the first call (the timing's warm-up step), replayed after
            nonlocal run
            run = capture_step(body, (w_opt, a_opt))
            run()

    def step():
        run()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return model, step


def step_flops_per_face(name: str, device: str = "cpu", size: int = SIZE) -> int:
    """FLOPs of one reference step per face (batch 1: one face in the weight step, one in the
    architecture step), counted at 32x32 and scaled to ``size``. The fused paths compute the same
    function with less work (no weight gradients in the architecture step, shared edges once);
    their rows use this same count, so their fraction of peak is an *effective* rate."""
    from frsengine.bench.flops import count_flops, scaled_flops

    def at(s: int) -> int:
        _, step = make_step(name, 1, "reference", device, size=s)
        return count_flops(step)

    return scaled_flops(at, size)


def _setup(payload: dict) -> None:
    if payload.get("threads"):
        torch.set_num_threads(payload["threads"])
    # Algorithm choice happens in the warm-up step (a fit check, which only asks whether a step at a
    # large batch runs, skips it: timing every algorithm there costs more than the step;
    # FRSENGINE_CUDNN_BENCHMARK=0 switches it off everywhere).
    default = os.environ.get("FRSENGINE_CUDNN_BENCHMARK", "1") != "0"
    torch.backends.cudnn.benchmark = payload.get("cudnn_benchmark", default)


def time_group(payload: dict) -> dict:
    """Child: ``{model, batch, paths, device, rounds[, threads, size, flops, memory]}`` -> seconds per
    step of every path (median of ``rounds`` interleaved steps after one warm-up step each).

    On CUDA each path's memory is read here too from torch's allocator counters (exact per process,
    so no process of its own is needed): ``peak_mib`` is the most it held from the model's creation
    through the warm-up and one more step (a graph path's capture included: its private pool keeps
    that much; with cuDNN's algorithm search on, the warm-up's trial workspaces too),
    ``resident_mib`` what stays allocated between steps (a graph pool not counted)."""
    _setup(payload)
    device, size = payload["device"], payload.get("size", SIZE)
    measure_memory = device.startswith("cuda") and payload.get("memory", True)
    steps, out = {}, {"paths": {}}
    for path in payload["paths"]:
        t0 = time.perf_counter()
        try:
            if measure_memory:
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            model, step = make_step(payload["model"], payload["batch"], path, device, size)
            step()  # warm-up: optimizer state, oneDNN/cuDNN algorithm choice, lazy init
            warmup_s = time.perf_counter() - t0
            if measure_memory:
                step()
                held, peak = torch.cuda.memory_allocated() - base, torch.cuda.max_memory_allocated() - base
        except Exception as exc:  # noqa: BLE001 - one path failing (e.g. out of memory) is one row
            import traceback

            out["paths"][path] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-3000:]}
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            continue
        out["paths"][path] = {"warmup_s": warmup_s}
        if measure_memory:
            out["paths"][path] |= {"resident_mib": held / 2**20, "step_peak_mib": (peak - held) / 2**20,
                                   "peak_mib": peak / 2**20}
        steps[path] = step
        out["params"] = sum(p.numel() for p in model.weight_parameters())
        out["arch_params"] = sum(p.numel() for p in model.arch_parameters())
    for path, timing in interleaved(steps, payload["rounds"], payload.get("rounds_budget_s")).items():
        out["paths"][path].update(timing)
    if payload.get("flops", True):
        steps.clear()
        t0 = time.perf_counter()
        out["flops_per_face"] = step_flops_per_face(payload["model"], device, size)
        out["flops_count_s"] = time.perf_counter() - t0
    return out


def memory_case(payload: dict) -> dict:
    """Child (allocator pinned): ``{model, batch, path, device[, threads, size]}`` -> peak MiB of one
    step after the warm-up (``step_peak_mib``), plus what the model, its gradients and optimizer
    state hold between steps (``resident_mib``)."""
    from frsengine.bench.memory import peak_growth_mib, resident_mib

    _setup(payload)
    device = payload["device"]
    import frsengine.models.prior_search  # noqa: F401 - imports and torch's lazy initialisation (thread
    _, warm = make_step("frsnet-tiny", 1, payload["path"], device, size=32)  # pool, oneDNN) are not the case's
    warm()
    del warm
    gc.collect()
    base = resident_mib(device)
    model, step = make_step(payload["model"], payload["batch"], payload["path"], device, payload.get("size", SIZE))
    step()
    resident = resident_mib(device) - base
    peak = peak_growth_mib(step, device)
    return {"step_peak_mib": peak, "resident_mib": resident, "peak_mib": resident + peak}


def estimate_largest_batch(rows: list[dict], capacity_mib: float) -> int | None:
    """Largest batch by the linear memory model peak(b) = fixed + b * per_image, fitted to the two
    largest measured batches of one (model, path)."""
    pts = sorted((r["batch"], r["peak_mib"]) for r in rows if not r.get("failed") and r.get("peak_mib"))
    if len(pts) < 2:
        return None
    (b0, m0), (b1, m1) = pts[-2], pts[-1]
    per_image = (m1 - m0) / (b1 - b0)
    if per_image <= 0:
        return None
    return int((capacity_mib - (m1 - b1 * per_image)) / per_image)
