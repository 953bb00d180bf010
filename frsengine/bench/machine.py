"""What a benchmark ran on: CPU, cores, GPU, library versions, git commit, and an estimate of the
machine's peak FLOP/s (the denominator of every "fraction of peak" figure).

Nothing here runs a torch op: the benchmark's parent process forks its measuring children, and a
process that has started OpenMP/CUDA must not fork (:mod:`frsengine.bench.child`).
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

# fp32 FLOPs per cycle per core: SIMD lanes x 2 (fused multiply-add) x 2 (two FMA ports on the
# server cores that have them). AVX-512: 16 lanes -> 32 per unit, x2 units = 64; AVX2/FMA3:
# 8 lanes -> 16 per unit, x2 = 32; SSE without FMA: 4-lane add + 4-lane multiply = 8.
FLOPS_PER_CYCLE = (("avx512f", 64, "AVX-512 FMA: 16 fp32 lanes x 2 (FMA) x 2 units"),
                   ("fma", 32, "AVX2 FMA: 8 fp32 lanes x 2 (FMA) x 2 units"),
                   ("sse2", 8, "SSE: 4-lane add + 4-lane multiply per cycle"))

# bf16 FLOPs per cycle per core, for the rows that run convolutions in bf16 (autocast). AMX: one
# TDPBF16PS (16x32 by 32x16 bf16 tiles, 16384 FLOPs) per 16 cycles; AVX512-BF16: VDPBF16PS does
# 2 bf16 products into each of 16 fp32 lanes (64 FLOPs), two units. Upper bounds: oneDNN gets near
# them only on large matrix shapes.
BF16_FLOPS_PER_CYCLE = (("amx_bf16", 1024, "AMX-BF16 tiles: 16384 FLOPs per 16 cycles"),
                        ("avx512_bf16", 128, "AVX512-BF16 dot products: 16 lanes x 2 pairs x 2 (FMA) x 2 units"))

# Dense (no structured sparsity) peaks in TFLOP/s from NVIDIA's data sheets, matched by substring
# of torch.cuda.get_device_name(); the first match wins, so the specific variants come first.
GPU_PEAKS_TFLOPS = (
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0}),
    ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5}),
    ("H100", {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4}),        # SXM5
    ("H200 NVL", {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5}),
    ("H200", {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4}),        # SXM
    ("A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}),        # SXM4 and PCIe
)

# (what the JSON calls it, distribution name or prefix): versions come from the installed
# distributions' metadata, so nothing is imported (DALI, TensorRT, triton take seconds to import).
VERSIONED = (("torch", "torch"), ("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("onnx", "onnx"),
             ("opencv", "opencv-"), ("dali", "nvidia-dali"), ("triton", "triton"), ("tensorrt", "tensorrt"),
             ("frsengine", "frsengine"))


def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical CPU (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    cpus = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        cpus.append(entry)
    return cpus


def _cpu_model(cpus: list[dict]) -> str:
    if cpus and cpus[0].get("model name"):
        return cpus[0]["model name"]
    try:
        import cpuinfo  # py-cpuinfo(2), when installed: also off Linux

        return cpuinfo.get_cpu_info().get("brand_raw") or platform.processor()
    except Exception:  # noqa: BLE001 - any failure: fall back to what platform knows
        return platform.processor() or platform.machine()


def _physical_cores(cpus: list[dict]) -> int:
    pairs = {(c.get("physical id"), c.get("core id")) for c in cpus if "core id" in c}
    if pairs:
        return len(pairs)
    if cpus and cpus[0].get("cpu cores", "").isdigit():
        sockets = len({c.get("physical id") for c in cpus}) or 1
        return int(cpus[0]["cpu cores"]) * sockets
    return os.cpu_count() or 1


def _clock_ghz(cpus: list[dict], model: str) -> tuple[float | None, str]:
    """Highest known clock: cpufreq's maximum, else the GHz in the model name, else /proc's MHz."""
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1e6, "cpufreq maximum (turbo)"
    except (OSError, ValueError):
        pass
    m = re.search(r"@\s*([\d.]+)\s*GHz", model)
    if m:
        return float(m.group(1)), "base clock from the model name"
    mhz = [float(c["cpu MHz"]) for c in cpus if c.get("cpu MHz")]
    if mhz:
        return max(mhz) / 1000, "current clock from /proc/cpuinfo (a VM often reports its base clock)"
    return None, "unknown"


def _flags(cpus: list[dict]) -> set[str]:
    return set(cpus[0].get("flags", "").split()) if cpus else set()


def cpu_peak(cores: int | None = None) -> dict:
    """Estimated fp32 peak FLOP/s of ``cores`` cores (default: all physical cores).

    cores x clock x FLOPs/cycle from the ISA flags (:data:`FLOPS_PER_CYCLE`). An estimate: the
    real sustained AVX-512 clock is usually below the nominal one, and whether a core has one or
    two FMA units is not in the flags (two assumed, as on server parts).
    """
    cpus = _cpuinfo()
    model = _cpu_model(cpus)
    physical = _physical_cores(cpus)
    cores = min(cores or physical, physical)
    ghz, clock_source = _clock_ghz(cpus, model)
    flags = _flags(cpus)
    per_cycle, isa = next(((n, why) for flag, n, why in FLOPS_PER_CYCLE if flag in flags), (None, "unknown ISA"))
    if ghz is None or per_cycle is None:
        return {"fp32": None, "bf16": None, "method": f"unknown (clock: {clock_source}, ISA: {isa})"}
    out = {"fp32": cores * ghz * 1e9 * per_cycle, "cores": cores, "ghz": ghz, "flops_per_cycle": per_cycle,
           "method": f"estimate: {cores} core(s) x {ghz:.2f} GHz ({clock_source}) x {per_cycle} fp32 "
                     f"FLOPs/cycle ({isa})"}
    bf16 = next(((n, why) for flag, n, why in BF16_FLOPS_PER_CYCLE if flag in flags), None)
    if bf16 is None:
        return {**out, "bf16": None, "note": "no native bf16 (AMX or AVX512-BF16): bf16 rows show no fraction of peak"}
    return {**out, "bf16": cores * ghz * 1e9 * bf16[0], "bf16_flops_per_cycle": bf16[0],
            "bf16_method": f"estimate: {cores} core(s) x {ghz:.2f} GHz x {bf16[0]} bf16 FLOPs/cycle ({bf16[1]})",
            "note": "the bf16 peak is the matrix units' rate at the same clock: an upper bound that "
                    "convolutions at these sizes stay far below"}


def gpu_peak(name: str | None) -> dict:
    """Dense fp32/TF32/fp16/bf16 peak FLOP/s of a known GPU by name (data-sheet figures)."""
    for key, peaks in GPU_PEAKS_TFLOPS:
        if name and key in name:
            return {**{p: v * 1e12 for p, v in peaks.items()},
                    "method": f"NVIDIA data sheet, dense, matched '{key}' in '{name}'"}
    return {"method": f"unknown GPU '{name}': no peak table entry (known: H100, H200, A100)"}


def peak_flops(peak: dict, device: str, precision: str = "fp32") -> float | None:
    """The peak that applies to one measurement: on CUDA fp32 convolutions run as TF32 when cuDNN
    allows it (torch's default), so their peak is the TF32 one."""
    if device.startswith("cuda"):
        gpu = peak.get("gpu") or {}
        if precision == "fp32":
            import torch

            precision = "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
        return gpu.get(precision)
    return (peak.get("cpu") or {}).get(precision)


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries the figures depend on (None: not installed)."""
    installed = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        installed.setdefault(name, dist.version)
    out = {}
    for key, dist in VERSIONED:
        if dist.endswith("-"):
            out[key] = next((f"{v} ({n})" for n, v in sorted(installed.items()) if n.startswith(dist)), None)
        else:
            out[key] = next((v for n, v in sorted(installed.items()) if n in (dist, dist + "-gpu") or n.startswith(dist + "-cu")), None)
    if out["frsengine"] is None:
        from frsengine import __version__

        out["frsengine"] = __version__
    return out


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def describe_machine(threads: int | None = None, gpu: bool = True) -> dict:
    """CPU model, cores, torch threads, GPU name/memory, library versions and the peak estimates.

    ``gpu=False`` leaves CUDA alone (describing the GPU initialises CUDA in this process)."""
    import torch

    cpus = _cpuinfo()
    threads = threads or torch.get_num_threads()
    physical = _physical_cores(cpus)
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    info = {
        "cpu": _cpu_model(cpus), "physical_cores": physical, "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity, "torch_threads": threads, "isa": sorted(_flags(cpus) & {
            "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx512_fp16"}),
        "platform": platform.platform(), "python": platform.python_version(),
        "gpu": None, "gpu_memory_gib": None, "cuda": torch.version.cuda,
        "versions": versions(), "git_commit": git_commit(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    peak = {"cpu": cpu_peak(min(threads, physical))}
    if gpu and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"], info["gpu_memory_gib"] = props.name, round(props.total_memory / 2**30, 1)
        info["gpu_count"] = torch.cuda.device_count()
        peak["gpu"] = gpu_peak(props.name)
    info["peak"] = peak
    return info


def nvidia_smi_gpus() -> list[tuple[str, float]] | None:
    """(name, memory GiB) of each NVIDIA GPU from ``nvidia-smi``, which creates no CUDA context in
    this process; None where it is missing or fails."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        name, _, mib = line.rpartition(",")
        try:
            gpus.append((name.strip(), round(float(mib) / 1024, 1)))
        except ValueError:
            return None
    return gpus or None


def describe_for(threads: int | None, device: str, method: str) -> dict:
    """:func:`describe_machine` for a process whose measurements run in children started by
    ``method``. For a CUDA device this process leaves CUDA alone: the GPU comes from nvidia-smi, or
    is described in a child of its own (on the H200, 2026-11-28, every CUDA child of the search-step
    benchmark failed with an illegal memory access while the same steps ran alone; a parent that
    had initialised CUDA was one of the differences, a cache release between measurements another;
    cause not established)."""
    if not device.startswith("cuda"):
        return describe_machine(threads, gpu=method == "spawn")
    gpus = nvidia_smi_gpus()
    if gpus is None:
        from frsengine.bench.child import run_in_child

        return run_in_child("frsengine.bench.machine:describe_in_child", {"threads": threads}, timeout=300,
                            method="spawn")
    info = describe_machine(threads, gpu=False)
    info["gpu"], info["gpu_memory_gib"] = gpus[0]
    info["gpu_count"] = len(gpus)
    info["peak"]["gpu"] = gpu_peak(gpus[0][0])
    return info


def describe_in_child(payload: dict) -> dict:
    """Child: :func:`describe_machine` with ``payload["threads"]``."""
    return describe_machine(payload.get("threads") or None)


def busy_note(info: dict) -> str | None:
    """A warning when other processes already load the CPU (torch's OpenMP threads then slow
    down far more than in proportion: 10-100x were seen on a shared 2-core VM)."""
    load = (info.get("load_average") or [0.0])[0]
    cpus = info.get("usable_cpus") or 1
    if load > 0.5 * cpus:
        return (f"machine busy: load average {load:.1f} on {cpus} CPUs before the run; times are noisy and "
                "torch's threads suffer most (compare ratios of one run; --threads 1 is steadier)")
    return None


def summary_line(info: dict) -> str:
    """One line for a table header: CPU, cores, threads, GPU, torch."""
    gpu = f"{info['gpu']} ({info['gpu_memory_gib']} GiB)" if info.get("gpu") else "no GPU"
    return (f"{info['cpu']}, {info['physical_cores']} cores / {info['logical_cpus']} logical, "
            f"{info['torch_threads']} torch threads, {gpu}, torch {info['versions'].get('torch')}")
