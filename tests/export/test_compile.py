"""The compile backend (torch.compile, frozen weights, padded static batch) against eager.

Compiling even the tiny network takes ~30-70 s on a shared 2-core CPU, beyond this suite's time
budget, so the test is in the slow tier (FRS_SLOW_TESTS=1; benchmarks/test_bench_restore.py also
checks compile against eager on every run).
"""
import pytest
import torch

from frsengine.export.backends import CompileBackend, TorchBackend


@pytest.mark.slow
def test_compile_backend_matches_eager_for_any_batch(random_package):
    compiled = CompileBackend(random_package.build(), torch.device("cpu"), batch_size=4)
    eager = TorchBackend(random_package.build(), torch.device("cpu"))
    for n in (3, 4, 9):  # short, exact and over-long batches: one compiled shape, padded
        x = torch.rand(n, 3, 128, 128)
        y = compiled(x)
        assert y.shape == x.shape
        assert float((y - eager(x)).abs().max()) < 1e-4
