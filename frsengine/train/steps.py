"""One optimisation step on a batch, shared by search (weight and architecture steps) and retrain:
micro-batches by faces, gradient accumulation, DDP synchronisation once per step, clipping, and the
forward pass + loss under ``model.precision``'s autocast (backward and the optimizer step outside it)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn

from frsengine.degrade import DegradedBatch
from frsengine.nas.fused import frozen
from frsengine.train.data import inputs_and_targets
from frsengine.train.precision import autocast
from frsengine.train.run import maybe_no_sync


def face_chunks(batch: DegradedBatch, k: int) -> list[DegradedBatch]:
    """``batch`` cut into ``k`` micro-batches of whole faces (each with its own single degradations),
    in the order data-parallel ranks would take them."""
    if k == 1:
        return [batch]
    n = batch.hq.shape[0] // k
    return [DegradedBatch(batch.hq[i * n:(i + 1) * n], batch.lq_full[i * n:(i + 1) * n],
                          None if batch.lq_singles is None else batch.lq_singles[i * n:(i + 1) * n],
                          batch.params[i * n:(i + 1) * n]) for i in range(k)]


def as_outputs(out) -> tuple[torch.Tensor, ...]:
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)


def optimise(net: nn.Module, batch: DegradedBatch, loss_fn: Callable, opt: torch.optim.Optimizer,
             params: Sequence[nn.Parameter], device: torch.device, micro_batches: int = 1,
             grad_clip: float | None = None, forward_kwargs: dict | None = None, precision: str = "fp32",
             autocast_cache: bool = True):
    """:func:`train_step` without reading anything on the host (a CUDA graph can capture it): returns
    (mean loss as a 0-d tensor on the device, (inputs, last output, targets) of the last micro-batch).
    ``autocast_cache=False`` under a capture (autocast's weight cache cannot be captured)."""
    opt.zero_grad(set_to_none=True)
    chunks = face_chunks(batch, micro_batches)
    total = None
    for i, chunk in enumerate(chunks):
        x, y = inputs_and_targets(chunk, device)
        with maybe_no_sync(net, i < len(chunks) - 1):
            with autocast(precision, device, cache=autocast_cache):
                out = as_outputs(net(x, **(forward_kwargs or {})))
                loss = loss_fn(out, y) / len(chunks)
            loss.backward()
        total = loss.detach() if total is None else total + loss.detach()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], grad_clip)
    opt.step()
    return total, (x, out[-1], y)


def train_step(net: nn.Module, batch: DegradedBatch, loss_fn: Callable, opt: torch.optim.Optimizer,
               params: Sequence[nn.Parameter], device: torch.device, micro_batches: int = 1,
               grad_clip: float | None = None, forward_kwargs: dict | None = None, precision: str = "fp32"):
    """Forward/backward over the micro-batches of ``batch``, then one step of ``opt`` (whose
    parameters are ``params``); forward and loss run under ``precision``'s autocast. Returns (mean
    loss, (inputs, last output, targets) of the last micro-batch)."""
    total, shown = optimise(net, batch, loss_fn, opt, params, device, micro_batches, grad_clip, forward_kwargs,
                            precision)
    return float(total), shown


def search_step(net: nn.Module, loss_fn: Callable, opt_w: torch.optim.Optimizer, opt_a: torch.optim.Optimizer,
                weights: Sequence[nn.Parameter], arch: Sequence[nn.Parameter], batch_a: DegradedBatch,
                batch_b: DegradedBatch | None, device: torch.device, micro_batches: int = 1,
                grad_clip: float | None = None, forward_kwargs: dict | None = None, precision_w: str = "fp32",
                precision_a: str = "fp32", autocast_cache: bool = True):
    """One step of the search's alternation (Algorithm 1): a weight step on ``batch_a`` with
    alpha/beta frozen, then, when ``batch_b`` is given, a first-order alpha/beta step on it with the
    weights frozen (no weight gradients). Nothing is read on the host: returns (weight loss,
    architecture loss or None) as device tensors and the weight step's (inputs, output, targets)."""
    net.train()
    with frozen(arch):
        loss_w, shown = optimise(net, batch_a, loss_fn, opt_w, weights, device, micro_batches, grad_clip,
                                 forward_kwargs, precision_w, autocast_cache)
    loss_a = None
    if batch_b is not None:
        with frozen(weights):
            loss_a, _ = optimise(net, batch_b, loss_fn, opt_a, arch, device, micro_batches, None, forward_kwargs,
                                 precision_a, autocast_cache)
    return loss_w, loss_a, shown
