#!/usr/bin/env bash
# The GPU machine check, as one prepared run (a lent GPU session has ~15 device-minutes in all):
# build frsengine._C with its CUDA sources, run the GPU tests, then the GPU benchmarks, most
# important first. Every stage gets min(its cap, the time left before BUDGET seconds), so a slow or
# failing stage never costs the later ones more than its cap. Logged to $OUT/log (the device
# tool's output folder; ./gpu-out elsewhere).
#
#   bash benchmarks/gpu_check.sh            # on a machine with a CUDA torch, nvcc and a GPU
set -u
OUT=${OUT:-gpu-out}
BUDGET=${BUDGET:-570}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
PY=${PY:-python3}
stage() { echo; echo "=== $(date +%T) [${SECONDS}s] $*"; }
cap() { local left=$((BUDGET - SECONDS)); [ "$left" -lt "$1" ] && echo $((left > 5 ? left : 5)) || echo "$1"; }
{
stage machine
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"

stage "build frsengine._C (CPU + CUDA sources)"
# In place, not `pip install -e .`: the GPU image's Python (3.12) is not the pinned 3.11 the package
# declares. The Triton kernels are installed as frsengine.kernels; in place that needs a link.
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
ln -sfn ../kernels frsengine/kernels
time timeout "$(cap 240)" $PY setup.py build_ext --inplace 2>&1 | grep -iE "error|frsengine:" | tail -15
$PY -c "from frsengine.ops import _ext, dispatch
print('extension problem:', _ext.problem(), '| CUDA kernels:', _ext.has_cuda())
print('mixed_op on cuda ->', dispatch.backend_for('mixed_op', 'cuda'))"

stage "GPU tests"
timeout "$(cap 120)" $PY -m pytest -q -p no:cacheprovider -rs tests/ops/test_native_build.py tests/nas/test_fused.py \
    tests/degrade/test_backends.py tests/train/test_cuda_graph.py -k "gpu or cuda or replayed" 2>&1 | tail -25

stage "search step, paper-size FRSNet supernet: plain vs fused, eager and replayed as a CUDA graph"
timeout "$(cap 200)" $PY benchmarks/search_step.py --device cuda --models frsnet --batches 1 4 8 \
    --paths reference fused fused-graph fused-checkpoint-graph --rounds 3 --max-batch \
    --json "$OUT/search_step_frsnet.json" 2>&1 | tail -20

stage "search step, FRSNet batch 4: the other paths (checkpoint and balanced eager, bf16, the plain path as a graph)"
timeout "$(cap 90)" $PY benchmarks/search_step.py --device cuda --models frsnet --batches 4 \
    --paths reference fused-checkpoint fused-balanced fused-bf16 reference-graph --rounds 3 \
    --json "$OUT/search_step_frsnet_more.json" 2>&1 | tail -8

stage "search step, the authors' search model (all three paths, batch 8)"
timeout "$(cap 70)" $PY benchmarks/search_step.py --device cuda --models authors --batches 8 --rounds 3 \
    --json "$OUT/search_step_authors.json" 2>&1 | tail -8

stage "restore throughput (batch 32)"
FRS_BENCH_DEVICE=cuda FRS_BENCH_BATCHES=32 timeout "$(cap 80)" $PY -m pytest -q -p no:cacheprovider \
    benchmarks/test_bench_restore.py 2>&1 | grep -v "^ *$" | tail -22

stage "search step, paper-size MFPSNet supernet (batch 4)"
timeout "$(cap 60)" $PY benchmarks/search_step.py --device cuda --models mfpsnet --batches 4 \
    --paths reference fused --rounds 2 --json "$OUT/search_step_mfpsnet.json" 2>&1 | tail -6

stage "degradation throughput (torch on CUDA vs the CPU baseline)"
timeout "$(cap 40)" $PY -m pytest -q -p no:cacheprovider benchmarks/test_bench_degrade.py -k "test_degrade_throughput and (cuda or opencv)" \
    2>&1 | grep -v "^ *$" | tail -14
stage "frsengine bench --device cuda --quick (table + JSON with ratios, FLOPs/face, fraction of peak)"
timeout "$(cap 110)" $PY -m frsengine.bench --device cuda --quick --no-memory --json "$OUT/bench_quick_cuda.json" 2>&1 | tail -45
stage done
} 2>&1 | tee "$OUT/log"
