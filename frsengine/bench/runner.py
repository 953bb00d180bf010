"""The benchmark suite behind ``frsengine bench``: plan the measurements of each suite, run each
group in child processes (time in one, memory in others), and turn the results into rows with
ratios to the group's baseline, FLOPs per face and the fraction of the machine's peak.

Every row: suite, group, case, baseline, value + unit, faces/s, ratio (speed-up against the
group's baseline measured in the same run: > 1 is faster), FLOPs per face, achieved FLOP/s and
fraction of peak (where meaningful), peak memory and its ratio to the baseline's. A case that
cannot run here (missing package, no CUDA, not in --quick) is a ``skipped`` row with the reason;
one that crashed or ran out of time is a ``failed`` row; neither stops the run.
"""
from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from frsengine.errors import FrsError

SUITES = ("search", "degrade", "inference")
SKIP_ERRORS = ("FrsError", "MissingDependencyError", "ImportError", "ModuleNotFoundError", "PackageError")


@dataclasses.dataclass
class Options:
    quick: bool = False
    suites: tuple[str, ...] = SUITES
    device: str = "cpu"
    rounds: int | None = None     # None: the mode's default per suite
    threads: int | None = None    # None: torch's default
    memory: bool = True
    timeout: float | None = None  # per child; None: 120 s quick, 1800 s full
    budget: float | None = None   # whole run, seconds; None: 95 s with --quick, unlimited otherwise
    rounds_budget: float | None = None  # seconds of timed rounds per group; None: 8 s quick, unlimited
    bf16: bool = False            # search suite: also the bf16 autocast paths

    def __post_init__(self):
        if self.quick and self.budget is None:
            self.budget = 95.0
        if self.quick and self.rounds_budget is None:
            self.rounds_budget = 8.0


def _fp32(case: str) -> str:
    return "fp32"


@dataclasses.dataclass
class Group:
    """One comparison: cases timed in one child (rounds interleaved), each case's memory in its own."""

    suite: str
    title: str
    baseline: str
    cases: list[str]
    time_func: str                      # "module:function" run in the child
    payload: dict
    memory_func: str | None = None
    batch: int = 1
    unit: str = "faces/s"               # or "s/step"
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)   # case -> reason (not run)
    device: str = "cpu"
    precision: Callable[[str], str] = _fp32
    device_of: Callable[[str], str] | None = None   # a case's device where it is not ``device``
    flops: bool = True                  # FLOPs/face and fraction of peak are meaningful here
    flops_key: str | None = None        # groups with the same key share one FLOP count
    extra: bool = False                 # --quick: run last, and only with EXTRA_MIN_S of the budget left


def parse_suites(text: str | None) -> tuple[str, ...]:
    if not text:
        return SUITES
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    for name in names:
        if name == "memory":
            raise FrsError("'memory' is not a suite: peak memory is a column of every suite's rows "
                           "(--no-memory leaves it out)")
        if name not in SUITES:
            raise FrsError(f"unknown suite {name!r}: choose from {', '.join(SUITES)} (comma-separated)")
    if not names:
        raise FrsError(f"--suites is empty: choose from {', '.join(SUITES)}")
    return names


# --------------------------------------------------------------------------------------- plans

def plan_search(opts: Options) -> list[Group]:
    from frsengine.bench.search import BASELINE, GRAPH_PATHS, PATHS, precision_of

    bf16 = ["reference-bf16", "fused-bf16", "fused-recompute-bf16", "fused-checkpoint-bf16"]
    cuda = opts.device == "cuda"
    paths = list(PATHS) + (bf16 if opts.bf16 else []) + (list(GRAPH_PATHS) if cuda else [])
    rounds = opts.rounds or (3 if opts.quick else (5 if cuda else 2))
    # (model, batch, size, extra)
    if opts.quick:
        cases = ([("frsnet-small", 4, 128, False), ("mfpsnet-tiny", 2, 128, True)] if cuda else
                 [("frsnet-tiny", 1, 128, False), ("mfpsnet-tiny", 1, 64, True)])
        skipped = {} if cuda else {
            "paper-size supernets": "not in --quick (5-25 s per step on a 2-core CPU); run without --quick"}
    elif cuda:
        cases = [("frsnet", 1, 128, False), ("frsnet", 4, 128, False), ("frsnet", 8, 128, False),
                 ("authors", 8, 128, False), ("mfpsnet", 4, 128, False)]
        skipped = {}
    else:
        cases = [("frsnet-small", 1, 128, False), ("frsnet-small", 4, 128, False), ("mfpsnet-tiny", 1, 128, False),
                 ("frsnet", 4, 128, False), ("authors", 1, 128, False)]
        skipped = {"mfpsnet (paper size)": "paper-size MFPSNet supernet: 437 GFLOPs forward per face, ~2.6 TFLOP "
                                           "per step, minutes per step on a CPU: run with --device cuda"}
    groups = []
    for model, batch, size, extra in cases:
        payload = {"model": model, "batch": batch, "size": size, "paths": paths, "device": opts.device,
                   "rounds": rounds, "threads": opts.threads}
        groups.append(Group("search", f"search step {model}, batch {batch}, {size}x{size}, {opts.device}", BASELINE,
                            list(paths), "frsengine.bench.search:time_group", payload,
                            "frsengine.bench.search:memory_case", batch=batch, unit="s/step", device=opts.device,
                            precision=precision_of, flops_key=f"search:{model}:{size}", extra=extra))
    if skipped:
        groups.append(Group("search", "search step: not run", BASELINE, [], "", {}, skipped=skipped, unit="s/step",
                            device=opts.device))
    return groups


def plan_degrade(opts: Options) -> list[Group]:
    from frsengine.bench.degrade import BASELINE, split_case

    rounds = opts.rounds or (3 if opts.quick else 5)
    batch = 32 if opts.quick else 64
    presets = ["paper"] if opts.quick else ["paper", "reference"]
    cases, skipped = ["opencv-cpu", "torch-cpu", "dali-cpu"], {}
    if opts.device == "cuda":
        cases += ["torch-cuda", "dali-cuda"]
    if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec("nvidia.dali") is None:
        for case in [c for c in cases if c.startswith("dali")]:
            cases.remove(case)
            skipped[case] = "nvidia-dali is not installed (pip install nvidia-dali-cuda130)"
    groups = []
    for preset in presets:
        payload = {"preset": preset, "batch": batch, "cases": cases, "rounds": rounds, "threads": opts.threads}
        groups.append(Group("degrade", f"degrade '{preset}': full + 4 singles, 128x128, batch {batch}", BASELINE,
                            list(cases), "frsengine.bench.degrade:time_group", payload,
                            "frsengine.bench.degrade:memory_case", batch=batch, flops=False, device=opts.device,
                            device_of=lambda case: split_case(case)[1] if "-" in case else opts.device,
                            skipped=dict(skipped) if preset == presets[0] else {}))
    return groups


def plan_inference(opts: Options, workdir: Path) -> list[Group]:
    from frsengine.bench.inference import BASELINE, CPU_CASES, GPU_CASES, precision_of
    from frsengine.export.backends import onnxruntime_available, tensorrt_available

    cuda = opts.device == "cuda"
    rounds = opts.rounds or (3 if opts.quick else (30 if cuda else 5))
    preset = "small" if opts.quick else "default"
    batches = ([1, 16] if cuda else [1, 8]) if opts.quick else ([1, 8, 32, 128] if cuda else [1, 8, 32])
    cases, skipped = list(GPU_CASES if cuda else CPU_CASES), {}
    if not onnxruntime_available() and "onnxruntime-fp32" in cases:
        skipped["onnxruntime-fp32"] = "onnxruntime/onnx/onnxscript not installed (./install.sh installs them)"
    if "tensorrt-fp16" in cases and not tensorrt_available():
        skipped["tensorrt-fp16"] = "tensorrt is not installed (pip install tensorrt on the GPU machine)"
    if opts.quick:
        for case in cases:
            if case.startswith("compile"):
                skipped[case] = ("not in --quick: torch.compile takes 25-70 s per batch size on a 2-core CPU"
                                 if not cuda else "not in --quick: one torch.compile per batch size")
            elif case == "eager-bf16" or (cuda and case == "compile-fp16"):
                skipped[case] = "not in --quick: run without --quick"
    cases = [c for c in cases if c not in skipped]
    package = str(workdir / f"frsnet-seed0-{preset}-random")
    groups = []
    for batch in batches:
        payload = {"package": package, "preset": preset, "batch": batch, "cases": cases, "device": opts.device,
                   "rounds": rounds if batch > 1 or opts.rounds else max(rounds, 5), "threads": opts.threads}
        groups.append(Group("inference", f"restore FRSNet seed0 '{preset}' (random weights), 128x128, batch {batch}, "
                            f"{opts.device}", BASELINE, list(cases), "frsengine.bench.inference:time_group", payload,
                            "frsengine.bench.inference:memory_case", batch=batch, device=opts.device,
                            precision=precision_of, flops_key=f"inference:{preset}"))
    if skipped:
        groups.append(Group("inference", "restore: not run", BASELINE, [], "", {}, skipped=skipped,
                            device=opts.device, precision=precision_of))
    return groups


def plan(opts: Options, workdir: Path) -> list[Group]:
    groups = []
    for suite in opts.suites:
        if suite == "search":
            groups += plan_search(opts)
        elif suite == "degrade":
            groups += plan_degrade(opts)
        else:
            groups += plan_inference(opts, workdir)
    return groups


# ----------------------------------------------------------------------------------- measuring

def _status_of(error: str) -> str:
    return "skipped" if error.split(":", 1)[0] in SKIP_ERRORS else "failed"


BUDGET_NOTE = "the --quick time budget was spent (busy machine?): run without --quick, or with --suites"
EXTRA_MIN_S = 40.0
DEADLINE_MARGIN_S = 12.0


def measure_group(group: Group, opts: Options, peak: dict, method: str,
                  state: dict | None = None, deadline: float | None = None,
                  share: float | None = None) -> list[dict]:
    """Run one group's children and return its rows (``state`` carries FLOPs across groups).
    ``deadline`` (time.monotonic()): what would start after it is skipped, and children are cut
    off at it (plus a margin); ``share``: this group's fair part of the time left, after which its
    timed rounds stop (at least one) and its memory children are left out, so that one slow group
    cannot starve the others."""
    from frsengine.bench.child import ChildFailed, run_group_in_child, run_in_child
    from frsengine.bench.machine import peak_flops

    state = state if state is not None else {}
    timeout = opts.timeout or (120 if opts.quick else 1800)

    def child_timeout() -> float:
        return timeout if deadline is None else max(5.0, min(timeout, deadline - time.monotonic() + DEADLINE_MARGIN_S))

    def spent() -> bool:
        return deadline is not None and time.monotonic() > deadline

    rows = [_row(group, case, "skipped", reason) for case, reason in group.skipped.items()]
    if not group.cases:
        return rows
    if spent():
        return rows + [_row(group, case, "skipped", BUDGET_NOTE) for case in group.cases]
    if group.extra and deadline is not None and deadline - time.monotonic() < EXTRA_MIN_S:
        left = max(0.0, deadline - time.monotonic())
        return rows + [_row(group, case, "skipped", f"--quick extra, run only with {EXTRA_MIN_S:.0f} s of the "
                            f"time budget left ({left:.0f} s were): run without --quick") for case in group.cases]
    known = state.get(group.flops_key) if group.flops_key else None
    payload = {**group.payload, "flops": group.flops and known is None}
    started = time.monotonic()
    if opts.rounds_budget:
        payload["rounds_budget_s"] = opts.rounds_budget if share is None else min(opts.rounds_budget, share / 4)
    try:
        result = run_group_in_child(group.time_func, payload, "paths" if "paths" in payload else "cases",
                                    timeout=child_timeout, method=method)
    except ChildFailed as exc:
        return rows + [_row(group, case, "failed", str(exc)) for case in group.cases]
    per_case = result.get("paths") or result.get("cases") or {}
    flops = result.get("flops_per_face", known)
    if flops is not None and group.flops_key:
        state[group.flops_key] = flops
    out = []
    for case in group.cases:
        r = per_case.get(case, {"error": "not measured"})
        if "error" in r:
            out.append(_row(group, case, _status_of(r["error"]), r["error"]))
            continue
        row = _row(group, case, "ok", None, seconds=r["seconds"],
                   details={k: v for k, v in r.items() if k != "seconds"})
        for key in ("params", "arch_params", "flops_count_s"):
            if key in result:
                row["details"][key] = result[key]
        if group.flops and flops:
            row["flops_per_face"] = flops
            row["achieved_flops"] = flops * row["faces_per_s"]
            row["peak_flops"] = peak_flops(peak, row["device"], row["precision"])
            if row["peak_flops"]:
                row["peak_fraction"] = row["achieved_flops"] / row["peak_flops"]
        if opts.memory and group.memory_func and (spent() or (share is not None and
                                                              time.monotonic() - started > share)):
            row["memory"] = {"error": "not measured: " + BUDGET_NOTE}
        elif opts.memory and group.memory_func:
            mem_payload = {**{k: v for k, v in group.payload.items() if k not in ("cases", "paths", "rounds")},
                           "case": case, "path": case}
            try:
                mem = run_in_child(group.memory_func, mem_payload, memory=True, timeout=child_timeout(),
                                   method=method)
                row["peak_mib"] = mem["peak_mib"]
                row["memory"] = mem
            except ChildFailed as exc:
                row["memory"] = {"error": str(exc)}
        out.append(row)
    _ratios(out, group.baseline)
    return rows + out


def _row(group: Group, case: str, status: str, reason: str | None, seconds: float | None = None,
         details: dict | None = None) -> dict:
    try:
        precision = group.precision(case)
    except (IndexError, ValueError):
        precision = None
    row = {"suite": group.suite, "group": group.title, "case": case, "baseline": group.baseline,
           "is_baseline": case == group.baseline, "status": status, "reason": reason,
           "device": group.device_of(case) if group.device_of else group.device,
           "precision": precision, "batch": group.batch if group.cases else None, "unit": group.unit,
           "value": None, "seconds": seconds, "faces_per_s": None, "ratio": None,
           "flops_per_face": None, "achieved_flops": None, "peak_flops": None, "peak_fraction": None,
           "peak_mib": None, "memory_ratio": None, "details": details or {}}
    if seconds:
        row["faces_per_s"] = group.batch / seconds
        row["value"] = seconds if group.unit == "s/step" else row["faces_per_s"]
    return row


def _ratios(rows: list[dict], baseline: str) -> None:
    """Every figure of a group as a ratio to its baseline row (same run)."""
    base = next((r for r in rows if r["case"] == baseline and r["status"] == "ok"), None)
    for r in rows:
        if r["status"] != "ok":
            continue
        if base is None:
            r["details"]["ratio_note"] = f"baseline {baseline} did not run: no ratio"
            continue
        r["ratio"] = r["faces_per_s"] / base["faces_per_s"]
        if r.get("peak_mib") is not None and base.get("peak_mib"):
            r["memory_ratio"] = r["peak_mib"] / base["peak_mib"]


# ------------------------------------------------------------------------------------- output

COLUMNS = f"  {'case':<22}{'value':>18}{'vs base':>9}{'GFLOP/face':>12}{'% peak':>8}{'peak MiB':>10}{'vs base':>9}"


def _fmt(value, spec: str, suffix: str = "", missing: str = "-") -> str:
    return missing if value is None else f"{value:{spec}}{suffix}"


def format_row(r: dict) -> str:
    name = r["case"] + (" *" if r["is_baseline"] else "")
    if r["status"] != "ok":
        return f"  {name:<22}{r['status']}: {r['reason']}"
    if r["unit"] == "s/step":
        value = f"{r['value']:.3g} s/step" if r["value"] < 100 else f"{r['value']:.0f} s/step"
    else:
        value = f"{r['value']:.1f} faces/s" if r["value"] < 1e4 else f"{r['value']:.0f} faces/s"
    mem = r.get("peak_mib")
    error = (r.get("memory") or {}).get("error", "")
    mem_txt = ("n/m" if error.startswith("not measured") else "failed") if mem is None and error else _fmt(mem, ".0f")
    return (f"  {name:<22}{value:>18}{_fmt(r['ratio'], '.2f', 'x'):>9}"
            f"{_fmt(r['flops_per_face'] and r['flops_per_face'] / 1e9, '.3g'):>12}"
            f"{_fmt(r['peak_fraction'] and 100 * r['peak_fraction'], '.1f', '%'):>8}"
            f"{mem_txt:>10}{_fmt(r['memory_ratio'], '.2f', 'x'):>9}")


def format_group(title: str, rows: list[dict]) -> str:
    lines = [title, COLUMNS] if any(r["status"] == "ok" for r in rows) else [title]
    alone = next((r["details"]["alone"] for r in rows if r["details"].get("alone")), None)
    return "\n".join(lines + [format_row(r) for r in rows] + ([f"  note: {alone}"] if alone else []))


def header(info: dict, opts: Options, notes: tuple[str, ...] = ()) -> str:
    from frsengine.bench.machine import summary_line

    cpu = info["peak"]["cpu"]
    lines = [f"frsengine bench ({'quick' if opts.quick else 'full'}, {opts.device}): {summary_line(info)}",
             f"CPU peak {cpu['fp32'] / 1e9:.0f} GFLOP/s fp32 ({cpu['method']})" if cpu.get("fp32")
             else f"CPU peak: {cpu['method']}"]
    if opts.bf16 and cpu.get("bf16"):
        lines.append(f"CPU peak {cpu['bf16'] / 1e9:.0f} GFLOP/s bf16 ({cpu['bf16_method']}; {cpu['note']})")
    gpu = info["peak"].get("gpu")
    if gpu and "fp32" in gpu:
        figures = ", ".join(f"{p} {gpu[p] / 1e12:.0f}" for p in ("fp32", "tf32", "fp16") if p in gpu)
        lines.append(f"GPU peak TFLOP/s: {figures} ({gpu['method']})")
    elif gpu:
        lines.append(f"GPU peak: {gpu['method']}")
    from frsengine.bench.machine import busy_note

    if busy_note(info):
        lines.append("NOTE " + busy_note(info))
    lines += [f"NOTE {note}" for note in notes]
    lines.append("value: median of interleaved rounds; vs base: speed (faces/s) / the baseline's (*), same run; "
                 "GFLOP/face: conv+matmul FLOPs (FlopCounterMode); % peak: achieved / estimated peak; "
                 "peak MiB: resident + peak growth of one call, own process; docs/benchmarks.md")
    return "\n".join(lines)


def torch_threads_default() -> int:
    import torch

    return torch.get_num_threads()


def run_bench(opts: Options, out=print, groups_hook: Callable[[list[Group]], None] | None = None,
              command: str | None = None, allow_fork: bool = False) -> dict:
    """Run the suites of ``opts``; print the table through ``out``; return the JSON document.
    ``allow_fork``: this process has run no torch op, so children may be forked from it
    (:func:`frsengine.bench.child.start_method`); otherwise each child is a fresh process."""
    from frsengine.bench.child import start_method
    from frsengine.bench.machine import busy_note, describe_for

    if opts.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise FrsError("--device cuda: no CUDA device is visible to torch here; use --device cpu")
    t_start = time.perf_counter()
    method = start_method(opts.device, allow_fork)
    info = describe_for(opts.threads, opts.device, method)
    threads_note = None
    if opts.quick and opts.threads is None and opts.device == "cpu" and busy_note(info) and info["torch_threads"] > 1:
        # Oversubscribed cores stall torch's OpenMP threads (a 2-thread step took 10-100x longer on a
        # loaded 2-core VM): one thread keeps --quick quick, and says so.
        opts = dataclasses.replace(opts, threads=1)
        info = describe_for(1, opts.device, method)
        threads_note = (f"--quick on a busy machine: torch runs with 1 thread instead of {torch_threads_default()} "
                        "(OpenMP threads stall on oversubscribed cores); --threads N overrides")
    out(header(info, opts, (threads_note,) if threads_note else ()))
    rows: list[dict] = []
    state: dict = {}
    with tempfile.TemporaryDirectory(prefix="frsengine-bench-") as tmp:
        groups = plan(opts, Path(tmp))
        groups = [g for g in groups if not g.extra] + [g for g in groups if g.extra]
        if groups_hook is not None:
            groups_hook(groups)
        deadline = time.monotonic() + opts.budget if opts.budget else None
        primary = sum(1 for g in groups if g.cases and not g.extra)
        for group in groups:
            t0 = time.perf_counter()
            share = None
            if deadline is not None and group.cases and not group.extra:
                share = max(0.0, deadline - time.monotonic()) / primary
                primary -= 1
            group_rows = measure_group(group, opts, info["peak"], method, state, deadline, share)
            rows += group_rows
            took = time.perf_counter() - t0
            out("\n" + format_group(f"{group.title}" + (f"  [{took:.0f} s]" if group.cases else ""), group_rows))
    wall = time.perf_counter() - t_start
    out(f"\nwall time {wall:.1f} s ({len([r for r in rows if r['status'] == 'ok'])} rows measured, "
        f"{len([r for r in rows if r['status'] == 'skipped'])} skipped, "
        f"{len([r for r in rows if r['status'] == 'failed'])} failed)")
    return {
        "schema": "frsengine-bench/1",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "mode": "quick" if opts.quick else "full", "device": opts.device, "suites": list(opts.suites),
        "rounds": opts.rounds, "threads": opts.threads or info["torch_threads"], "child_start": method,
        "wall_s": wall, "machine": info, "busy_note": busy_note(info), "threads_note": threads_note,
        "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "definitions": {
            "value": "median over the rounds (one warm-up call first, not timed); s/step for search, faces/s otherwise",
            "ratio": "faces/s of the row / faces/s of its group's baseline row, measured in the same run "
                     "(> 1: faster); the baseline row has 1.0",
            "flops_per_face": "FLOPs of convolutions and matrix products (torch.utils.flop_counter), 2 per "
                              "multiply-add; search: one reference step (weight + architecture step) at batch 1; "
                              "inference: one forward",
            "peak_fraction": "flops_per_face * faces/s / the estimated peak FLOP/s of the device and precision",
            "peak_mib": "memory held after the warm-up (resident) + peak growth during one call, measured in a "
                        "process of its own with glibc's mmap threshold pinned (CPU RSS) or torch's allocator (CUDA)",
            "memory_ratio": "peak_mib / the baseline row's peak_mib",
        },
        "rows": rows,
    }


def default_json_path() -> Path:
    return Path(f"frsengine-bench-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")


def write_json(doc: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path
