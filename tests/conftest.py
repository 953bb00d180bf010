"""Session-wide test settings: threads per xdist worker, the Triton interpreter on machines without
a GPU, and the opt-in slow tier (FRS_SLOW_TESTS=1)."""
import os

import pytest
import torch

# Triton kernels run on CPU tensors only under the interpreter, and TRITON_INTERPRET is read when a
# kernel is defined, so it must be set before frsengine.kernels is imported by any test module.
# On a GPU machine the real kernels are tested instead (tests/ops/test_native_build.py).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# `pytest -n N` starts N workers on the same cores: give each its share of threads, or N x cores
# threads contend (and OpenMP barriers stall) on the 2-core CI machine.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))

SLOW = os.environ.get("FRS_SLOW_TESTS") == "1"


def pytest_collection_modifyitems(config, items):
    if SLOW:
        return
    skip = pytest.mark.skip(reason="slow tier (minutes on a 2-core CPU): set FRS_SLOW_TESTS=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
