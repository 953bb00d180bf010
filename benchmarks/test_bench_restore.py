"""Faces/s of restoration at 128x128, batch 1/8/32, per backend, ratios against plain eager
PyTorch (fp32, NCHW) measured in the same run.

Network and backends: frsengine.bench.inference (the ``inference`` suite of ``frsengine bench``,
read its docstring): the derived FRSNet of configs/genotypes/frsnet-seed0.json, 'default' preset
(2.80 M parameters, 5.1 GFLOPs/face), BN folded, **random weights** (seeded); each backend the one
``frsengine.restore`` runs; the timed call is one model batch, input and output on the benchmarked
device (synchronised on CUDA), no decoding or host<->device copies.

    .venv/bin/python -m pytest benchmarks/test_bench_restore.py                       # CPU
    .venv/bin/python benchmarks/test_bench_restore.py --batches 8,32                  # interleaved (shared machines)
    FRS_BENCH_DEVICE=cuda python -m pytest benchmarks/test_bench_restore.py           # GPU

CPU rows: eager-fp32-nchw (baseline), eager-fp32 (channels-last: the ``torch`` backend),
compile-fp32 (torch.compile, inductor, frozen weights), onnxruntime-fp32; plus eager-bf16 where
the CPU has AVX512-BF16/AMX (lower precision: its max abs error against fp32 is recorded).
GPU rows: eager-fp32-nchw (baseline), eager-fp32, eager-fp16, eager-bf16 (channels-last),
compile-fp32, compile-fp16, tensorrt-fp16 if ``tensorrt`` imports (cuDNN benchmark mode on for
all). FRS_BENCH_THREADS sets torch/onnxruntime CPU threads (default: all cores);
FRS_BENCH_BATCHES overrides the batch sizes (e.g. "1,8"). Compile time is not counted (warm-up).
"""
from __future__ import annotations

import importlib.util
import os
import time

import pytest
import torch

from frsengine.bench.inference import CPU_CASES, GPU_CASES, make_backend, make_package
from frsengine.export.backends import cpu_has_bf16, tensorrt_available

DEVICE = os.environ.get("FRS_BENCH_DEVICE", "cpu")
THREADS = int(os.environ.get("FRS_BENCH_THREADS", "0")) or os.cpu_count()
BATCHES = [int(b) for b in os.environ.get("FRS_BENCH_BATCHES", "1,8,32").split(",")]
SIZE = 128

if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("FRS_BENCH_DEVICE=cuda but torch sees no CUDA device", allow_module_level=True)

CASES = [c for c in (GPU_CASES if DEVICE == "cuda" else CPU_CASES)
         if not (c == "tensorrt-fp16" and not tensorrt_available())
         and not (DEVICE == "cpu" and c == "eager-bf16" and not cpu_has_bf16())]
BASELINE = CASES[0]


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    torch.set_num_threads(THREADS)
    torch.backends.cudnn.benchmark = True  # every GPU row alike: cuDNN picks its fastest kernels
    cache = tmp_path_factory.mktemp("cache")
    os.environ.setdefault("FRSENGINE_CACHE", str(cache))  # ONNX export / engines of this run only
    return make_package(cache / "frsnet-seed0-random", "default")


_backends: dict[tuple[str, int], object] = {}


def make(case: str, package, batch: int):
    key = (case, batch if case.startswith(("compile", "tensorrt")) else 0)
    if key not in _backends:
        _backends[key] = make_backend(case, package, batch, DEVICE, THREADS)
    return _backends[key]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", CASES)
def test_restore_throughput(benchmark, report, package, case, batch):
    backend = make(case, package, batch)
    x = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).to(DEVICE)

    def run():
        y = backend(x)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return y

    t0 = time.perf_counter()
    y = run()  # warm-up: compilation, ONNX export, engine build, allocator
    warmup_s = time.perf_counter() - t0
    ref = make(BASELINE, package, batch)(x).float().cpu()
    err = float((y.cpu().float() - ref).abs().max())
    benchmark.group = f"restore {DEVICE}: {SIZE}x{SIZE} FRSNet seed0/default (random weights), batch {batch}"
    report(benchmark, items=batch, baseline=(case == BASELINE), max_abs_err_vs_baseline=err,
           warmup_s=round(warmup_s, 1), threads=THREADS, device=DEVICE,
           gpu=torch.cuda.get_device_name(0) if DEVICE == "cuda" else None)
    rounds = 3 if DEVICE == "cpu" and batch >= 8 else 10
    if DEVICE == "cuda":
        rounds = 30
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    assert y.shape == x.shape and torch.isfinite(y).all()
    if "bf16" not in case and "fp16" not in case:  # fp32 rows
        # CUDA fp32 convolutions run as TF32 by default (torch's cuDNN setting): ~1e-3 differences
        # between algorithms; CPU fp32 paths agree to ~1e-5. (Outputs of this random net reach ~2.)
        tol = 1e-2 if DEVICE == "cuda" else 1e-3
        assert err < tol, f"{case} differs from the fp32 eager baseline by {err}"


if importlib.util.find_spec("tensorrt") is None and DEVICE == "cuda":
    @pytest.mark.skip(reason="tensorrt is not installed: TensorRT rows need `pip install tensorrt` on the GPU machine")
    def test_tensorrt_missing():
        pass


def interleaved(batches=(8, 32), rounds: int = 4) -> None:
    """Same backends, timed round-robin (one call of each per round, best of ``rounds``), so that
    every backend sees the same background load: steadier ratios on a shared machine.

        .venv/bin/python benchmarks/test_bench_restore.py [--rounds 4] [--batches 8,32]
    """
    import tempfile

    from frsengine.bench.timing import interleaved as timed

    torch.set_num_threads(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("FRSENGINE_CACHE", tmp)
        pkg = make_package(os.path.join(tmp, "pkg"), "default")
        print(f"{DEVICE}, {THREADS} thread(s), rounds interleaved, best of {rounds}; baseline {BASELINE}")
        for batch in batches:
            x = torch.rand(batch, 3, SIZE, SIZE).to(DEVICE)
            backends = {case: make(case, pkg, batch) for case in CASES}
            for b in backends.values():
                b(x)  # warm-up / compile / export

            def call(b):
                return lambda: (b(x), torch.cuda.synchronize() if DEVICE == "cuda" else None)

            best = {case: min(t["times"]) for case, t in timed({c: call(b) for c, b in backends.items()}, rounds).items()}
            base = best[BASELINE]
            print(f"batch {batch}: " + ", ".join(f"{c} {batch / t:.1f}/s ({base / t:.2f}x)" for c, t in best.items()))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=interleaved.__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    opts = parser.parse_args()
    interleaved(tuple(int(b) for b in opts.batches.split(",")), opts.rounds)
