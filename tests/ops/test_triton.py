"""The Triton cases of the op tests (test_mixed_op.py, test_mixed_precision.py,
test_beta_aggregation.py) run in this process: on a machine without a GPU tests/conftest.py sets
TRITON_INTERPRET=1 before any kernel is defined. This guard makes sure they really run there
instead of skipping."""
import importlib.util

import pytest
import torch

from frsengine.ops import dispatch


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU machine tests the compiled Triton kernels")
def test_triton_cases_run_under_the_interpreter_on_cpu():
    assert dispatch.unavailable_reason("triton", torch.device("cpu")) is None
