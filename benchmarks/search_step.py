"""One full search step (weight step, then architecture step), plain path vs fused path, same run.

    .venv/bin/python benchmarks/search_step.py                        # CPU table: authors' model, FRSNet
    .venv/bin/python benchmarks/search_step.py --models frsnet --batches 1 4 8 --rounds 3
    .venv/bin/python benchmarks/search_step.py --device cuda --models frsnet mfpsnet authors --batches 1 4 8
    .venv/bin/python benchmarks/search_step.py --device cuda --max-batch      # + largest batch that fits

A step is Algorithm 1's first-order alternation at 128x128: forward/backward/SGD (momentum 0.9,
lr 0.025) on the weights with an L1 loss on one batch, then forward/backward/Adam (lr 1e-4, weight
decay 1e-3) on alpha/beta with another batch; BN in training mode.

- ``reference``: the plain supernet exactly as the authors run it (per-branch cells, shared edges
  recomputed per branch, and a full backward in the architecture step, weight gradients included).
- ``fused``: ``frsengine.nas.fused`` (batched branches, shared H_{l-2} edges once, 1x1 convs at the
  lower resolution, aggregation folded into the concat, fused mixed-op kernels keeping their conv
  outputs) and the architecture step with frozen weights (no weight gradients).
- ``fused-recompute``: the same, mixed ops recompute their convolutions in backward (least memory).

Models: ``authors`` = the authors' search model (frsengine.models.prior_search: fixed upsampler from
configs/genotypes/frsnet-seed0.json + one searched parsing-prior grid; 17.8 M parameters, 108
arch parameters), ``frsnet`` / ``mfpsnet`` = the paper-size supernets, ``*-small`` = the CPU presets.

Each (model, batch, path) runs in two subprocesses: time = median of ``--rounds`` steps after one
warm-up step (normal allocator); memory = peak growth during one step after the warm-up
(benchmarks/peak.py, allocator pinned so RSS follows live memory: resident set on CPU, torch's peak
allocation on CUDA) plus what existed before (model, optimizer state).
``--json FILE`` writes every figure with the machine description.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from peak import peak_growth_mib, rss_kib, run_child  # noqa: E402

PATHS = ("reference", "fused", "fused-recompute")


def build_model(name: str):
    from frsengine.models import build_supernet
    from frsengine.models.prior_search import PriorSearchNet
    from frsengine.nas.genotype import load_genotype
    if name == "authors":
        return PriorSearchNet(load_genotype(ROOT / "configs" / "genotypes" / "frsnet-seed0.json"))
    network, _, preset = name.partition("-")
    return build_supernet(network, preset or "default")


def make_step(name: str, batch: int, path: str, device: str = "cpu", size: int = 128):
    """(model, step) for one configuration: step() runs one weight step and one architecture step."""
    from frsengine.models.stats import example_inputs
    from frsengine.nas.fused import frozen, use_fused_search
    torch.manual_seed(0)
    model = build_model(name).to(device).train()
    if path != "reference" and use_fused_search(model, keep=(path == "fused")) == 0:
        raise RuntimeError(f"{name}: no search space could be fused")
    w_params, a_params = model.weight_parameters(), model.arch_parameters()
    w_opt = torch.optim.SGD(w_params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_opt = torch.optim.Adam(a_params, lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    g = torch.Generator().manual_seed(1)

    def batch_inputs():
        args, kwargs = example_inputs(model, size=size, batch=batch, device="cpu")
        args = tuple(torch.rand(a.shape, generator=g).to(device) for a in args)
        kwargs = {k: {n: torch.rand(t.shape, generator=g).to(device) for n, t in v.items()} for k, v in kwargs.items()}
        return args, kwargs, torch.rand(args[0].shape, generator=g).to(device)

    data_a, data_b = batch_inputs(), batch_inputs()

    def loss(data):
        args, kwargs, target = data
        out = model(*args, **kwargs)
        return sum(F.l1_loss(o, target) for o in (out if isinstance(out, tuple) else (out,)))

    def step():
        w_opt.zero_grad(set_to_none=True)
        loss(data_a).backward()
        w_opt.step()
        a_opt.zero_grad(set_to_none=True)
        if path == "reference":
            model.zero_grad(set_to_none=True)
            loss(data_b).backward()        # the authors' full backward (weight grads computed, unused)
        else:
            with frozen(w_params):
                loss(data_b).backward()
        a_opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return model, step


def measure(case: dict) -> dict:
    """Runs in the subprocess for one (model, batch, path)."""
    torch.set_num_threads(case.get("threads") or torch.get_num_threads())
    torch.backends.cudnn.benchmark = True   # algorithm choice happens in the warm-up step
    device = case["device"]
    base_mib = (torch.cuda.memory_allocated() if device.startswith("cuda") else rss_kib("VmRSS") * 1024) / 2**20
    model, step = make_step(case["model"], case["batch"], case["path"], device)
    step()  # warm-up: optimizer state, oneDNN/cuDNN algorithm choice, lazy init
    model_mib = (torch.cuda.memory_allocated() if device.startswith("cuda") else rss_kib("VmRSS") * 1024) / 2**20
    if case.get("memory"):
        peak = peak_growth_mib(step, device)
        return {**case, "step_peak_mib": peak, "resident_mib": model_mib - base_mib,
                "peak_mib": model_mib - base_mib + peak}
    times = []
    for _ in range(case["rounds"]):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {**case, "seconds": statistics.median(times), "times": times,
            "params": sum(p.numel() for p in model.weight_parameters()),
            "arch_params": sum(p.numel() for p in model.arch_parameters())}


def fits(case: dict) -> bool:
    return run_child(__file__, {**case, "rounds": 1}, timeout=900, for_memory=False) is not None


def estimate_largest_batch(rows: list[dict], capacity_mib: float) -> int | None:
    """Largest batch by the linear memory model peak(b) = fixed + b * per_image, fitted to the two
    largest measured batches of one (model, path)."""
    pts = sorted((r["batch"], r["peak_mib"]) for r in rows if not r.get("failed"))
    if len(pts) < 2:
        return None
    (b0, m0), (b1, m1) = pts[-2], pts[-1]
    per_image = (m1 - m0) / (b1 - b0)
    if per_image <= 0:
        return None
    return int((capacity_mib - (m1 - b1 * per_image)) / per_image)


def machine() -> dict:
    sys.path.insert(0, str(HERE))
    from conftest import machine_description
    return {"machine": machine_description(), "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["authors", "frsnet"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--max-batch", action="store_true",
                   help="also estimate the largest batch that fits in GPU memory (needs >= 2 batches)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = []
    print(f"# {machine()['machine']}")
    print(f"{'model':<14}{'batch':>6}  {'path':<16}{'s/step':>9}{'speed-up':>10}{'peak GiB':>10}{'mem ratio':>10}")
    for model in args.models:
        for batch in args.batches:
            ref = None
            for path in args.paths:
                case = {"model": model, "batch": batch, "path": path, "device": args.device,
                        "rounds": args.rounds, "threads": args.threads}
                r = run_child(__file__, case, for_memory=False)
                mem = run_child(__file__, {**case, "memory": True, "rounds": 0}) if r is not None else None
                if r is None or mem is None:
                    print(f"{model:<14}{batch:>6}  {path:<16}{'failed (out of memory?)':>39}", flush=True)
                    rows.append({**case, "failed": True})
                    continue
                r.update({k: mem[k] for k in ("step_peak_mib", "resident_mib", "peak_mib")})
                ref = r if path == "reference" else ref
                speed = f"{ref['seconds'] / r['seconds']:.2f}x" if ref else "n/a"
                mem = f"{r['peak_mib'] / ref['peak_mib']:.2f}x" if ref else "n/a"
                print(f"{model:<14}{batch:>6}  {path:<16}{r['seconds']:>9.2f}{speed:>10}{r['peak_mib'] / 1024:>10.2f}"
                      f"{mem:>10}", flush=True)
                rows.append({**r, "speedup_vs_reference": speed, "memory_vs_reference": mem})
    if args.max_batch:
        # Estimated from the measured peaks, then checked with one step at 90 % of the estimate.
        capacity = torch.cuda.get_device_properties(0).total_memory / 2**20 * 0.95
        for model in args.models:
            found = {}
            for path in args.paths:
                mine = [r for r in rows if r.get("model") == model and r.get("path") == path and "batch" in r]
                est = estimate_largest_batch(mine, capacity)
                if est is None:
                    continue
                check = max(1, int(0.9 * est))
                ok = fits({"model": model, "path": path, "device": args.device, "threads": args.threads,
                           "batch": check})
                found[path] = est
                print(f"largest batch {model:<14}{path:<16} ~{est:>5} (estimated; one step at {check}: "
                      f"{'ran' if ok else 'FAILED'})", flush=True)
                rows.append({"model": model, "path": path, "largest_batch_estimate": est, "checked_batch": check,
                             "check_ran": ok})
            if found.get("reference"):
                for path, b in found.items():
                    print(f"  {model} {path}: {b / found['reference']:.1f}x the reference's largest batch")
    if args.json:
        args.json.write_text(json.dumps({**machine(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1].startswith("{"):   # the per-case subprocess
        print(json.dumps(measure(json.loads(sys.argv[1]))))
    else:
        sys.exit(main())
