"""The search step replayed as a CUDA graph (frsengine.train.cuda_graph) against the eager step."""
from __future__ import annotations

import pytest
import torch

from frsengine.bench.search import make_step

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs)")


def test_graph_paths_refuse_a_cpu_with_a_reason():
    from frsengine.train.cuda_graph import capture_step

    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        make_step("frsnet-tiny", 1, "fused-graph", "cpu")
    with pytest.raises(ValueError, match="unknown path 'fused-bf16-graph'"):
        make_step("frsnet-tiny", 1, "fused-bf16-graph", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA graphs need a CUDA device"):
            capture_step(lambda: None)


@needs_cuda
@pytest.mark.parametrize("path", ["fused", "fused-checkpoint", "reference"])
def test_replayed_steps_equal_eager_steps(path, monkeypatch):
    """Five steps each way from the same start: 3 eager warm-up steps + capture + 2 replays vs 5 eager
    steps give the same weights, alpha/beta and BatchNorm statistics (cuDNN may pick other algorithms
    run to run: a tolerance, not equality)."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    eager, eager_step = make_step("frsnet-tiny", 2, path, "cuda", size=32)
    graphed, graphed_step = make_step("frsnet-tiny", 2, f"{path}-graph", "cuda", size=32)
    for _ in range(5):
        eager_step()
    graphed_step()      # 3 warm-up steps, the capture, 1 replay
    graphed_step()
    for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        if a.dtype == torch.long:
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    before = [p.detach().clone() for p in graphed.parameters()]
    graphed_step()
    assert any(not torch.equal(p, q) for p, q in zip(graphed.parameters(), before)), "a replay changed nothing"
