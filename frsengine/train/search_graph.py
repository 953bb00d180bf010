"""The search loop's step (weight step, then architecture step) replayed as one CUDA graph.

On a GPU the eager search step is bound by the host launching tens of thousands of small kernels
(docs/benchmarks.md); a replay launches the captured step at once. ``schedule.cuda_graph: true``
makes ``frsengine search`` run its steps through :class:`GraphedSearchStep` (CUDA, one process):

- The first ``warmup`` steps of each configuration (the weight step alone while alpha/beta are
  frozen, then both steps) run eagerly on a side stream. They are real steps, each on its own
  batch: they create the optimizer state, let cuDNN choose its algorithms and compile kernels, so
  the step that follows can be captured. It is captured and replayed; every later step copies its
  batch into the captured input tensors and replays.
- The optimizers take device-side forms (:func:`device_side`): the weight optimizer's learning rate
  becomes a device tensor updated in place each step (fused SGD reads it on the device; Adam
  becomes capturable, its step count on the device too).
- A batch of another shape (none with the drop_last training loaders) runs eagerly.
- Losses stay on the device until read.

The plain loop (``frsengine.train.steps.train_step``) is the oracle: the replayed steps give the
same weights, alpha/beta and BatchNorm statistics (``tests/train/test_search_graph.py``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

from frsengine.degrade import DegradedBatch
from frsengine.errors import FrsError
from frsengine.train.steps import search_step


def device_side(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Switch ``opt`` (SGD or Adam) to forms a CUDA graph can capture, in place: the learning rate
    as a 1-element tensor on ``device`` (:func:`set_lr` updates it without a new value being baked
    into a graph), fused SGD, capturable Adam (CUDA) with its step counts on the device."""
    for group in opt.param_groups:
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
        if isinstance(opt, torch.optim.SGD):
            group["foreach"], group["fused"] = False, True
        elif isinstance(opt, torch.optim.Adam):
            if device.type == "cuda":
                group["capturable"] = True
        else:
            raise TypeError(f"device_side: {type(opt).__name__} is not supported (SGD, Adam)")
    if isinstance(opt, torch.optim.Adam) and device.type == "cuda":
        for state in opt.state.values():
            if "step" in state:
                state["step"] = state["step"].to(device=device, dtype=torch.float32)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """The learning rate of every group of a :func:`device_side` optimizer, written in place."""
    for group in opt.param_groups:
        group["lr"].fill_(lr)


class _Captured:
    """One captured step: its graph, input tensors and outputs (all on the device)."""

    def __init__(self, graph, inputs: list[DegradedBatch], loss_w, loss_a, shown):
        self.graph, self.inputs, self.loss_w, self.loss_a, self.shown = graph, inputs, loss_w, loss_a, shown

    def fits(self, batches: Sequence[DegradedBatch]) -> bool:
        return all(_shapes(b) == _shapes(s) for b, s in zip(batches, self.inputs))

    def load(self, batches: Sequence[DegradedBatch]) -> None:
        for b, s in zip(batches, self.inputs):
            for src, dst in zip(_images(b), _images(s)):
                dst.copy_(src, non_blocking=True)


def _images(b: DegradedBatch) -> list[torch.Tensor]:
    return [t for t in (b.hq, b.lq_full, b.lq_singles) if t is not None]


def _shapes(b: DegradedBatch) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in _images(b)]


def _on(b: DegradedBatch, device: torch.device) -> DegradedBatch:
    """A copy of ``b``'s images on ``device`` (the captured step's own input tensors)."""
    copy = [t.to(device, copy=True) if t is not None else None for t in (b.hq, b.lq_full, b.lq_singles)]
    return DegradedBatch(*copy, b.params)


class GraphedSearchStep:
    """``step(batch_a, batch_b, lr)``: the search loop's weight step on ``batch_a`` (alpha/beta
    frozen) and, when ``batch_b`` is given, its architecture step (weights frozen), replayed from a
    CUDA graph once warmed up. Returns (weight loss, architecture loss or None) as device tensors
    and the (inputs, output, targets) of the weight step's last micro-batch.

    ``capture=False`` runs every step eagerly through the same code (a CPU can test all of it but
    the capture)."""

    def __init__(self, net: nn.Module, loss_fn: Callable, opt_w: torch.optim.Optimizer, opt_a: torch.optim.Optimizer,
                 weights: Sequence[nn.Parameter], arch: Sequence[nn.Parameter], device: torch.device, *,
                 micro_batches: int = 1, grad_clip: float | None = None, forward_kwargs: dict | None = None,
                 precision_w: str = "fp32", precision_a: str = "fp32", warmup: int = 2, capture: bool = True):
        if capture and device.type != "cuda":
            raise FrsError(f"schedule.cuda_graph needs a CUDA device (this run: {device.type}): set it to false")
        self.net, self.loss_fn, self.opt_w, self.opt_a = net, loss_fn, opt_w, opt_a
        self.weights, self.arch, self.device = list(weights), list(arch), device
        self.micro_batches, self.grad_clip, self.kwargs = micro_batches, grad_clip, forward_kwargs or {}
        self.precision_w, self.precision_a = precision_w, precision_a
        self.warmup, self.capture = warmup, capture
        device_side(opt_w, device)
        device_side(opt_a, device)
        self.graphs: dict[bool, _Captured] = {}
        self.eager_steps: dict[bool, int] = {}
        self.stream = torch.cuda.Stream(device) if capture else None

    def _body(self, batch_a: DegradedBatch, batch_b: DegradedBatch | None, cache: bool = True):
        return search_step(self.net, self.loss_fn, self.opt_w, self.opt_a, self.weights, self.arch, batch_a, batch_b,
                           self.device, self.micro_batches, self.grad_clip, self.kwargs, self.precision_w,
                           self.precision_a, cache)

    def _on_side_stream(self, fn: Callable):
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            out = fn()
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return out

    def _capture(self, inputs: list[DegradedBatch]) -> _Captured:
        self.opt_w.zero_grad(set_to_none=True)   # the captured backward allocates the gradients
        self.opt_a.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        # thread_local: the data loader's pin-memory thread may call CUDA while this thread captures.
        with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
            loss_w, loss_a, shown = self._body(inputs[0], inputs[1] if len(inputs) > 1 else None, cache=False)
        return _Captured(graph, inputs, loss_w, loss_a, shown)

    def step(self, batch_a: DegradedBatch, batch_b: DegradedBatch | None, lr: float):
        set_lr(self.opt_w, lr)
        arch_on = batch_b is not None
        batches = [batch_a, batch_b] if arch_on else [batch_a]
        captured = self.graphs.get(arch_on)
        if captured is not None and captured.fits(batches):
            captured.load(batches)
            captured.graph.replay()
            return captured.loss_w, captured.loss_a, captured.shown
        if not self.capture:
            return self._body(batch_a, batch_b)
        if captured is None and self.eager_steps.get(arch_on, 0) >= self.warmup:
            if arch_on:
                self.graphs.pop(False, None)   # alpha/beta never freeze again: free that graph's pool
            inputs = [_on(b, self.device) for b in batches]   # the graph's own input tensors, this batch in them
            captured = self.graphs[arch_on] = self._on_side_stream(lambda: self._capture(inputs))
            captured.graph.replay()
            return captured.loss_w, captured.loss_a, captured.shown
        if captured is None:   # a warm-up step: real, eager, on the stream the capture will use
            self.eager_steps[arch_on] = self.eager_steps.get(arch_on, 0) + 1
            return self._on_side_stream(lambda: self._body(batch_a, batch_b))
        return self._body(batch_a, batch_b)   # a batch of another shape
