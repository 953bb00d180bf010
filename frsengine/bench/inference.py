"""Faces/s of restoration at 128x128 per inference backend and batch size, against plain eager
PyTorch (fp32, NCHW) measured in the same process, rounds interleaved.

Network: the derived FRSNet of configs/genotypes/frsnet-seed0.json with a preset's sizes
(``default`` = paper size, 2.80 M parameters, 5.1 GFLOPs/face), **random weights** (seeded; speed
does not depend on them), saved as a model package. Each backend is the one ``frsengine.restore``
runs (frsengine.export.backends); the timed call is one batch, input and output on the benchmarked
device (synchronised on CUDA), no decoding or host<->device copies. Compilation, ONNX export and
engine builds happen in the warm-up call and are not timed (``warmup_s`` in the JSON); the ONNX
export is cached in $FRSENGINE_CACHE (default ~/.cache/frsengine), keyed by the weights' hash.

Cases (``BACKEND-PRECISION``): ``eager-fp32-nchw`` (the baseline), ``eager-fp32`` / ``-fp16`` /
``-bf16`` (channels-last: the ``torch`` backend), ``compile-fp32`` / ``-fp16`` (torch.compile,
inductor, frozen weights), ``onnxruntime-fp32`` (CPU), ``tensorrt-fp16`` (CUDA).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from frsengine.bench.timing import interleaved

ROOT = Path(__file__).resolve().parents[2]
GENOTYPE = ROOT / "configs" / "genotypes" / "frsnet-seed0.json"
BASELINE = "eager-fp32-nchw"
SIZE = 128
CPU_CASES = ("eager-fp32-nchw", "eager-fp32", "compile-fp32", "onnxruntime-fp32", "eager-bf16")
GPU_CASES = ("eager-fp32-nchw", "eager-fp32", "eager-fp16", "eager-bf16", "compile-fp32", "compile-fp16",
             "tensorrt-fp16")


def precision_of(case: str) -> str:
    return case.split("-")[1]


def make_package(path: str | os.PathLike, preset: str = "default"):
    """The benchmark's model package at ``path`` (made once, seeded random weights), loaded."""
    from frsengine.export.package import load_package, save_package

    path = Path(path)
    if not path.exists():
        from frsengine.models import build_derived
        from frsengine.nas.genotype import load_genotype

        torch.manual_seed(0)
        model = build_derived(load_genotype(GENOTYPE), preset)
        save_package(model, path, preset=preset, input_size=SIZE,
                     training_data="untrained (random initialisation): speed benchmark only")
    return load_package(path)


def make_backend(case: str, package, batch: int, device: str = "cpu", threads: int | None = None):
    """The backend object of one case (see the module doc for the names)."""
    from frsengine.export.backends import CompileBackend, OnnxRuntimeBackend, TorchBackend

    dev = torch.device(device)
    kind, precision = case.split("-")[:2]
    if kind == "eager":
        return TorchBackend(package.build(), dev, precision, channels_last=not case.endswith("-nchw"))
    if kind == "compile":
        return CompileBackend(package.build(), dev, precision, batch_size=batch)
    if kind == "onnxruntime":
        return OnnxRuntimeBackend(package, dev, threads=threads)
    if kind == "tensorrt":
        from frsengine.export.backends import TensorRTBackend

        return TensorRTBackend(package, dev, precision, batch_size=batch)
    raise ValueError(f"unknown inference case {case!r}")


def _setup(payload: dict) -> None:
    if payload.get("threads"):
        torch.set_num_threads(payload["threads"])
    torch.backends.cudnn.benchmark = True  # every GPU row alike: cuDNN picks its fastest kernels


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_group(payload: dict) -> dict:
    """Child: ``{package, preset, batch, cases, rounds, device[, threads, flops]}`` -> seconds per
    batch of every case (median of ``rounds`` interleaved calls after one warm-up call), and each
    output's max abs difference from the baseline's."""
    _setup(payload)
    device, batch = payload["device"], payload["batch"]
    package = make_package(payload["package"], payload.get("preset", "default"))
    x = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).to(device)
    runs, outputs, out = {}, {}, {"cases": {}}
    for case in payload["cases"]:
        t0 = time.perf_counter()
        try:
            backend = make_backend(case, package, batch, device, payload.get("threads"))
            outputs[case] = backend(x).float().cpu()  # warm-up: compile, export, engine build
            _sync(device)
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run here is one row
            out["cases"][case] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            continue
        runs[case] = backend
        out["cases"][case] = {"warmup_s": time.perf_counter() - t0}
    calls = {case: (lambda b=backend: (b(x), _sync(device))) for case, backend in runs.items()}
    for case, timing in interleaved(calls, payload["rounds"], payload.get("rounds_budget_s")).items():
        out["cases"][case].update(timing)
    ref = outputs.get(BASELINE)
    for case in runs:
        if ref is not None:
            out["cases"][case]["max_abs_err_vs_baseline"] = float((outputs[case] - ref).abs().max())
    if payload.get("flops", True):
        from frsengine.bench.flops import forward_flops_per_face

        model = package.build().eval()
        out["flops_per_face"] = forward_flops_per_face(model, SIZE)
        out["params"] = sum(p.numel() for p in model.parameters())
    return out


def memory_case(payload: dict) -> dict:
    """Child (allocator pinned): ``{package, preset, batch, case, device}`` -> peak MiB of one call
    after the warm-up, plus what the backend holds after the warm-up (weights, compiled code, ONNX
    Runtime's arena, engine)."""
    from frsengine.bench.memory import peak_growth_mib, resident_mib

    _setup(payload)
    device, batch = payload["device"], payload["batch"]
    package = make_package(payload["package"], payload.get("preset", "default"))
    x = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).to(device)
    if payload["case"].startswith("onnxruntime"):
        import onnxruntime  # noqa: F401 - module imports are not the case's memory

        import frsengine.export.onnx  # noqa: F401
    base = resident_mib(device)
    backend = make_backend(payload["case"], package, batch, device, payload.get("threads"))
    backend(x)
    _sync(device)
    resident = resident_mib(device) - base
    peak = peak_growth_mib(lambda: (backend(x), _sync(device)), device)
    return {"step_peak_mib": peak, "resident_mib": resident, "peak_mib": resident + peak}
