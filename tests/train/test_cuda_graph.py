"""The search step replayed as a CUDA graph (frsengine.train.cuda_graph) against the eager step."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from frsengine.bench.search import build_model, make_step
from frsengine.models.stats import example_inputs
from frsengine.nas.fused import frozen, use_fused_search
from frsengine.ops import dispatch

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


class _OpNames(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.name())
        return func(*args, **(kwargs or {}))


# Ops that copy a value to the host (.item(), float(t), bool(t), data-dependent shapes): on a GPU
# each is a synchronisation, and inside a CUDA-graph capture an error.
HOST_SYNC_OPS = {"aten::_local_scalar_dense", "aten::item", "aten::nonzero", "aten::is_nonzero", "aten::equal"}


@pytest.mark.parametrize("backend", ["reference", "cpp"])
@pytest.mark.parametrize("mode", [None, "keep", "checkpoint"], ids=["plain", "fused", "fused-checkpoint"])
def test_search_step_never_reads_a_tensor_on_the_host(mode, backend, monkeypatch):
    """What a CPU can check of capturability: the forward and backward of the weight step and of the
    frozen-weight architecture step dispatch no op that reads a tensor value on the host (the
    seeded test checks that such a read is seen)."""
    if dispatch.unavailable_reason(backend, torch.device("cpu")):
        pytest.skip(f"{backend}: {dispatch.unavailable_reason(backend, torch.device('cpu'))}")
    monkeypatch.setenv(dispatch.ENV_VAR, backend)
    torch.manual_seed(0)
    model = build_model("frsnet-tiny").train()
    if mode:
        use_fused_search(model, mode=mode)
    args, kwargs = example_inputs(model, size=32, batch=2, device="cpu")

    def loss():
        out = model(*args, **kwargs)
        out = out if isinstance(out, torch.Tensor) else out[0]
        return F.l1_loss(out, torch.zeros_like(out))

    with _OpNames() as ops:
        loss().backward()
        with frozen(model.weight_parameters()):
            loss().backward()
    assert len(ops.names) > 1000 and "aten::convolution" in " ".join(ops.names)
    assert not HOST_SYNC_OPS & set(ops.names), sorted(HOST_SYNC_OPS & set(ops.names))
    with _OpNames() as seeded:
        float(args[0].sum())
    assert HOST_SYNC_OPS & set(seeded.names)


@needs_cuda
@pytest.mark.parametrize("path", ["fused", "fused-checkpoint", "reference"])
def test_replayed_steps_equal_eager_steps(path, monkeypatch):
    """Five steps each way from the same start: 3 eager warm-up steps + capture + 2 replays vs 5 eager
    steps give the same weights, alpha/beta and BatchNorm statistics (cuDNN may pick other algorithms
    run to run: a tolerance, not equality)."""
    # The same cuDNN algorithms, deterministic ones, in full float32 (no TF32) on both sides.
    for flag, value in (("benchmark", False), ("deterministic", True), ("allow_tf32", False)):
        monkeypatch.setattr(torch.backends.cudnn, flag, value)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
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
