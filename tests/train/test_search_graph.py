"""The search loop's step replayed as a CUDA graph (frsengine.train.search_graph) against the plain
loop (frsengine.train.steps.train_step), and what a CPU can check of it."""
from __future__ import annotations

import pytest
import torch

from frsengine.bench.search import build_model
from frsengine.degrade import DegradedBatch
from frsengine.errors import FrsError
from frsengine.nas.fused import frozen, use_fused_search
from frsengine.train import load_config, search
from frsengine.train.checkpoint import load_checkpoint, save_checkpoint
from frsengine.train.config import LossConfig
from frsengine.train.losses import RestorationLoss
from frsengine.train.run import set_lr as plain_set_lr
from frsengine.train.search_graph import GraphedSearchStep, device_side
from frsengine.train.steps import train_step
from tests.train.helpers import SEARCH_TINY, tiny_overrides

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CUDA graphs)")

# 3 weight-only steps (alpha/beta frozen), then 5 with the architecture step: on a GPU each
# configuration runs 2 eager warm-up steps, is captured at the third and replayed after.
SCHEDULE = [False] * 3 + [True] * 5


def _batches(size: int, seed: int) -> list[DegradedBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in SCHEDULE:
        hq = torch.rand(2, 3, size, size, generator=g)
        out.append(DegradedBatch(hq, torch.rand(2, 3, size, size, generator=g),
                                 torch.rand(2, 4, 3, size, size, generator=g), [None, None]))
    return out


def _setup(device: str):
    torch.manual_seed(0)
    model = build_model("frsnet-tiny").to(device)
    use_fused_search(model, mode="keep")
    opt_w = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    opt_a = torch.optim.Adam(model.arch_parameters(), lr=1e-3, betas=(0.5, 0.999), weight_decay=1e-3)
    return model, opt_w, opt_a


def _run(device: str, graphed: bool | None):
    """Final state and losses of SCHEDULE's steps: the plain loop (graphed None) or GraphedSearchStep
    (capturing when ``graphed``)."""
    dev = torch.device(device)
    model, opt_w, opt_a = _setup(device)
    loss_fn = RestorationLoss.from_config(LossConfig()).to(dev)
    weights, arch = model.weight_parameters(), model.arch_parameters()
    step = None if graphed is None else GraphedSearchStep(model, loss_fn, opt_w, opt_a, weights, arch, dev,
                                                          grad_clip=5.0, capture=graphed)
    losses = []
    for i, (arch_on, a, b) in enumerate(zip(SCHEDULE, _batches(32, 1), _batches(32, 2))):
        lr = 0.025 * (1 - i / 20)
        if step is not None:
            lw, la, _ = step.step(a, b if arch_on else None, lr)
            losses.append((float(lw), None if la is None else float(la)))
            continue
        plain_set_lr(opt_w, lr)
        model.train()
        with frozen(arch):
            lw, _ = train_step(model, a, loss_fn, opt_w, weights, dev, 1, 5.0)
        la = None
        if arch_on:
            with frozen(weights):
                la, _ = train_step(model, b, loss_fn, opt_a, arch, dev, 1, None)
        losses.append((lw, la))
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, losses


def _same(got, want, rtol, atol):
    (s1, l1), (s0, l0) = got, want
    assert s1.keys() == s0.keys()
    for name in s0:
        if s0[name].dtype == torch.long:
            assert torch.equal(s1[name], s0[name]), name
        else:
            torch.testing.assert_close(s1[name], s0[name], rtol=rtol, atol=atol, msg=name)
    assert [la is None for _, la in l1] == [la is None for _, la in l0]
    torch.testing.assert_close(torch.tensor([lw for lw, _ in l1]), torch.tensor([lw for lw, _ in l0]), rtol=rtol, atol=atol)


def test_device_side_steps_equal_the_plain_loop_on_cpu():
    """Without the capture (a CPU), the same steps through GraphedSearchStep: fused SGD reading its
    learning rate from a tensor, static losses on the device, the weight-only then the full step."""
    _same(_run("cpu", graphed=False), _run("cpu", graphed=None), rtol=1e-5, atol=1e-6)


def test_weight_step_reads_nothing_on_the_host():
    """What a CPU can check of the capture: the weight step through GraphedSearchStep (forward,
    backward, gradient clipping, fused SGD with its learning rate on the device) dispatches no op
    that reads a tensor on the host. (Adam is capturable on CUDA only; on a CPU it reads its step.)"""
    from tests.train.test_cuda_graph import HOST_SYNC_OPS, _OpNames

    dev = torch.device("cpu")
    model, opt_w, opt_a = _setup("cpu")
    step = GraphedSearchStep(model, RestorationLoss.from_config(LossConfig()), opt_w, opt_a,
                             model.weight_parameters(), model.arch_parameters(), dev, grad_clip=5.0, capture=False)
    batch = _batches(32, 1)[0]
    step.step(batch, None, 0.01)    # momentum buffers exist from here on, as in a captured step
    with _OpNames() as ops:
        step.step(batch, None, 0.02)
    assert "aten::_fused_sgd_" in " ".join(ops.names) and "aten::convolution" in " ".join(ops.names)
    assert not HOST_SYNC_OPS & set(ops.names), sorted(HOST_SYNC_OPS & set(ops.names))


def test_capture_needs_cuda_with_a_reason():
    model, opt_w, opt_a = _setup("cpu")
    with pytest.raises(FrsError, match="schedule.cuda_graph needs a CUDA device"):
        GraphedSearchStep(model, torch.nn.L1Loss(), opt_w, opt_a, model.weight_parameters(),
                          model.arch_parameters(), torch.device("cpu"))


def test_search_with_cuda_graph_on_a_cpu_says_what_to_do(faces, tmp_path):
    cfg = load_config(SEARCH_TINY, tiny_overrides(faces, tmp_path / "run", **{"schedule.cuda_graph": "true",
                                                                              "schedule.max_steps": "1"}))
    with pytest.raises(FrsError, match="set it to false"):
        search(cfg)


def test_a_device_side_optimizer_checkpoint_resumes_as_a_plain_one_and_back(tmp_path):
    """The learning rate tensor is saved as its value; execution flags (fused, capturable, foreach)
    stay those of the optimizer the checkpoint is loaded into; the state (momentum) comes back."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    device_side(opt, torch.device("cpu"))
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor) and opt.param_groups[0]["fused"]
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c.safetensors", model, {"w": opt}, {"step": 1}, {})
    plain = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    load_checkpoint(tmp_path / "c.safetensors").restore_optimizer("w", plain)
    group = plain.param_groups[0]
    assert group["lr"] == pytest.approx(0.1) and not isinstance(group["lr"], torch.Tensor)
    assert not group["fused"]
    for p in model.parameters():
        torch.testing.assert_close(plain.state[p]["momentum_buffer"], opt.state[p]["momentum_buffer"])
    again = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    device_side(again, torch.device("cpu"))
    load_checkpoint(tmp_path / "c.safetensors").restore_optimizer("w", again)
    assert again.param_groups[0]["fused"]


@needs_cuda
def test_replayed_search_steps_equal_the_plain_loop(monkeypatch):
    """On a GPU: 2 warm-up steps, the capture and replays of the weight-only step, then of the
    full step, give the plain loop's weights, alpha/beta, BatchNorm statistics and losses."""
    for flag, value in (("benchmark", False), ("deterministic", True), ("allow_tf32", False)):
        monkeypatch.setattr(torch.backends.cudnn, flag, value)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    _same(_run("cuda", graphed=True), _run("cuda", graphed=None), rtol=1e-4, atol=1e-5)


@needs_cuda
def test_search_with_cuda_graph_gives_the_plain_search(faces, tmp_path, monkeypatch):
    """`frsengine search` with schedule.cuda_graph: the same model after 9 steps (3 an epoch, alpha/beta
    from the second epoch) as without."""
    for flag, value in (("benchmark", False), ("deterministic", True), ("allow_tf32", False)):
        monkeypatch.setattr(torch.backends.cudnn, flag, value)
    states = {}
    for graph in ("false", "true"):
        out = tmp_path / graph
        cfg = load_config(SEARCH_TINY, tiny_overrides(faces, out, **{
            "device": "cuda", "schedule.epochs": "3", "schedule.cuda_graph": graph, "data.workers": "0"}))
        assert search(cfg)["steps"] == 9
        states[graph] = load_checkpoint(out / "checkpoints" / "last.safetensors").model_state()
    for name, want in states["false"].items():
        torch.testing.assert_close(states["true"][name], want, rtol=1e-4, atol=1e-5, msg=name)
