"""One full search step (weight step, then architecture step), plain path vs fused path, same run.

    .venv/bin/python benchmarks/search_step.py                        # CPU table: authors' model, FRSNet
    .venv/bin/python benchmarks/search_step.py --models frsnet --batches 1 4 8 --rounds 3
    .venv/bin/python benchmarks/search_step.py --device cuda --models frsnet mfpsnet authors --batches 1 4 8
    .venv/bin/python benchmarks/search_step.py --device cuda --max-batch      # + largest batch that fits
    .venv/bin/python benchmarks/search_step.py --models frsnet --batches 1 --size 16 --threads 1   # host cost
    .venv/bin/python benchmarks/search_step.py --models frsnet --batches 4 --paths reference fused \
        reference-bf16 fused-bf16 fused-recompute-bf16       # bf16 autocast paths (AMX/AVX512-BF16 CPUs, GPUs)

A thin command line over ``frsengine.bench.search`` (the step, the paths and the models are described
there; ``frsengine bench --suites search`` runs the same measurement with the suite's presets).
Each (model, batch) is timed in one child process, its paths' steps interleaved round by round
(median of ``--rounds`` steps after one warm-up step each, normal allocator); on CPU each path's
memory is measured in a child of its own (allocator pinned so RSS follows live memory): ``peak`` =
what the model, gradients and optimizer state hold after the warm-up + the peak growth during one
step; on CUDA in the timing child from torch's allocator counters (its peak from the model's
creation through the warm-up and one more step, a CUDA graph's capture included).
``--max-batch`` estimates each eager path's largest batch from its two largest measured batches
and runs one step at 90 % of it (a graph path's pool holds its eager path's peak: same estimate).
``--json FILE`` writes every figure with the machine description.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from frsengine.bench.child import ChildFailed, run_group_in_child, run_in_child, start_method
from frsengine.bench.search import ALL_PATHS, PATHS, build_model, estimate_largest_batch, make_step  # noqa: F401 (re-exported)


def machine(threads: int | None, device: str, method: str) -> dict:
    from frsengine.bench.machine import describe_for

    info = describe_for(threads or None, device, method)
    return {"machine": info, "threads": info["torch_threads"]}


def fits(case: dict, method: str) -> bool:
    try:
        run_in_child("frsengine.bench.search:time_group",
                     {**case, "paths": [case["path"]], "rounds": 1, "flops": False, "cudnn_benchmark": False,
                      "memory": False},
                     timeout=900, method=method)
    except ChildFailed:
        return False
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["authors", "frsnet"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=ALL_PATHS,
                   help="plain/fused paths; PATH-bf16 / PATH-bf16w run under bf16 autocast, PATH-graph replays the "
                        "step as a CUDA graph (see frsengine.bench.search)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--size", type=int, default=128,
                   help="face size (default 128); at 16 the compute is negligible and the step time is the host's "
                        "own cost (Python, dispatch, launches), which bounds the step on a GPU")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--max-batch", nargs="*", metavar="PATH",
                   help="also estimate the largest batch that fits in GPU memory (needs >= 2 batches), of "
                        "these paths (none named: every eager path)")
    p.add_argument("--in-process", action="store_true",
                   help="time in this process, not in a child (to debug a failing case: its traceback is printed "
                        "whole; CUDA memory is still measured, CPU memory is not)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    method = start_method(args.device, allow_fork=True)   # this process runs no torch op before
    rows = []
    from frsengine.bench.machine import summary_line

    info = machine(args.threads, args.device, method)
    print(f"# {summary_line(info['machine'])}")
    ref16 = "reference-bf16" in args.paths
    print(f"{'model':<14}{'batch':>6}  {'path':<22}{'s/step':>9}{'speed-up':>10}{'peak GiB':>10}{'mem ratio':>10}"
          + (f"{'vs ref-bf16':>13}" if ref16 else ""))
    for model in args.models:
        for batch in args.batches:
            case = {"model": model, "batch": batch, "device": args.device, "rounds": args.rounds,
                    "threads": args.threads, "paths": args.paths, "flops": False, "size": args.size}
            try:
                if args.in_process:
                    from frsengine.bench.search import time_group

                    timed = time_group(case)["paths"]
                    for path, r in timed.items():
                        if "trace" in r:
                            print(f"--- {model} batch {batch} {path}:\n{r['trace']}", flush=True)
                        elif "peak_mib" not in r:
                            r["peak_mib"] = float("nan")   # CPU memory needs a child of its own
                else:
                    timed = run_group_in_child("frsengine.bench.search:time_group", case, "paths", timeout=3600,
                                               method=method)["paths"]
            except ChildFailed as exc:
                timed = {path: {"error": str(exc)} for path in args.paths}
            ref = ref_bf16 = None
            for path in args.paths:
                one = {k: v for k, v in case.items() if k != "paths"} | {"path": path}
                r = timed.get(path, {"error": "not measured"})
                if "error" not in r and "peak_mib" not in r:   # CUDA: measured in the timing child
                    try:
                        mem = run_in_child("frsengine.bench.search:memory_case", one, memory=True, timeout=3600,
                                           method=method)
                    except ChildFailed as exc:
                        r = {"error": f"memory: {exc}"}
                    else:
                        r = {**r, **mem}
                if "error" in r:
                    print(f"{model:<14}{batch:>6}  {path:<22}failed: {r['error'][:200]}", flush=True)
                    if r.get("trace") and not args.in_process and not any(row.get("trace") for row in rows):
                        # the first one's end (the cause; later ones often fail because it did)
                        print("    " + "\n    ".join(r["trace"].strip().splitlines()[-8:]), flush=True)
                    rows.append({**one, "failed": True, "error": r["error"], "trace": r.get("trace")})
                    continue
                r = {**one, **r}
                ref = r if path == "reference" else ref
                ref_bf16 = r if path == "reference-bf16" else ref_bf16
                speed = f"{ref['seconds'] / r['seconds']:.2f}x" if ref else "n/a"
                mem = f"{r['peak_mib'] / ref['peak_mib']:.2f}x" if ref else "n/a"
                speed16 = f"{ref_bf16['seconds'] / r['seconds']:.2f}x" if ref_bf16 else "n/a"
                print(f"{model:<14}{batch:>6}  {path:<22}{r['seconds']:>9.2f}{speed:>10}{r['peak_mib'] / 1024:>10.2f}"
                      f"{mem:>10}" + (f"{speed16:>13}" if ref16 else "")
                      + ("  (timed alone: the shared child died)" if r.get("alone") else ""), flush=True)
                rows.append({**r, "speedup_vs_reference": speed, "memory_vs_reference": mem}
                            | ({"speedup_vs_reference_bf16": speed16} if ref16 else {}))
    if args.max_batch is not None:
        # Estimated from the measured peaks, then checked with one step at 90 % of the estimate.
        capacity = (info["machine"].get("gpu_memory_gib") or 0) * 1024 * 0.95
        for model in args.models:
            found = {}
            for path in args.paths:
                if path.endswith("-graph") or (args.max_batch and path not in args.max_batch):
                    continue   # a graph's pool holds what its eager step peaks at: the eager estimate
                mine = [r for r in rows if r.get("model") == model and r.get("path") == path and "batch" in r]
                est = estimate_largest_batch(mine, capacity)
                if est is None:
                    continue
                check = max(1, int(0.9 * est))
                ok = fits({"model": model, "path": path, "device": args.device, "threads": args.threads,
                           "size": args.size, "batch": check}, method)
                found[path] = est
                print(f"largest batch {model:<14}{path:<16} ~{est:>5} (estimated; one step at {check}: "
                      f"{'ran' if ok else 'FAILED'})", flush=True)
                rows.append({"model": model, "path": path, "largest_batch_estimate": est, "checked_batch": check,
                             "check_ran": ok})
            if found.get("reference"):
                for path, b in found.items():
                    print(f"  {model} {path}: {b / found['reference']:.1f}x the reference's largest batch")
    if args.json:
        args.json.write_text(json.dumps({**info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
