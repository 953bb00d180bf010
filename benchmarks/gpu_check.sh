#!/usr/bin/env bash
# The GPU machine check, as one prepared run (a lent GPU session has ~15 device-minutes in all):
# build frsengine._C with its CUDA sources, run the GPU tests, then the GPU benchmarks. Each stage
# has its own time limit so a slow or failing stage never costs the later ones. Everything is
# logged to $OUT/log (the device tool's output folder; ./gpu-out elsewhere).
#
#   bash benchmarks/gpu_check.sh            # on a machine with a CUDA torch, nvcc and a GPU
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
PY=${PY:-python3}
stage() { echo; echo "=== $(date +%T) $*"; }
{
stage machine
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"

stage "build frsengine._C (CPU + CUDA sources)"
time timeout 420 $PY -m pip install --no-build-isolation --no-deps --no-index -q -e . 2>&1 | grep -v "^ *$" | tail -15
$PY -c "from frsengine.ops import _ext, dispatch; import torch
print('extension problem:', _ext.problem(), '| CUDA kernels:', _ext.has_cuda())
print('mixed_op on cuda ->', dispatch.backend_for('mixed_op', 'cuda'))"

stage "GPU tests"
timeout 300 $PY -m pytest -q -p no:cacheprovider -rs tests/ops/test_native_build.py tests/nas/test_fused.py \
    tests/degrade/test_backends.py -k "gpu or cuda" 2>&1 | tail -25

stage "search step: plain vs fused on the GPU"
timeout 420 $PY benchmarks/search_step.py --device cuda --models frsnet authors --batches 1 4 8 --rounds 3 \
    --max-batch --json "$OUT/search_step_gpu.json" 2>&1 | tail -30
timeout 240 $PY benchmarks/search_step.py --device cuda --models mfpsnet --batches 1 4 \
    --paths reference fused --rounds 2 --json "$OUT/search_step_gpu_mfpsnet.json" 2>&1 | tail -10

if [ -f benchmarks/test_bench_restore.py ]; then
  stage "restore throughput on the GPU"
  FRS_BENCH_DEVICE=cuda timeout 180 $PY -m pytest -q -p no:cacheprovider benchmarks/test_bench_restore.py \
      --benchmark-columns=median,rounds 2>&1 | tail -30
fi

stage "degradation throughput (torch on CUDA vs CPU backends)"
timeout 150 $PY -m pytest -q -p no:cacheprovider benchmarks/test_bench_degrade.py -k "cuda or opencv" \
    --benchmark-columns=median,rounds 2>&1 | tail -20
stage done
} 2>&1 | tee "$OUT/log"
