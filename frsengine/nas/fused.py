"""Fused execution of the supernet: the same function as the plain cells, computed with less work.

Enabled per model with :func:`use_fused_search`; the plain path (``SearchCell.forward`` +
``aggregate_branches``) stays the reference it is tested against. Per grid node:

- **1x1 pre-processing at the lower resolution**: a branch that is upsampled to the node runs its
  1x1 conv before the bilinear resize (both are linear, so they commute; BatchNorm and ReLU still
  see the resized tensor): 4x fewer conv pixels on that branch.
- **Batched branches**: the 2-3 branches share the block ops (same weights, same alpha), so they
  run as one batch, groups interleaved along the batch, each normalised with its own batch
  statistics (``frsengine::mixed_op`` with ``groups``); running statistics are updated group by
  group in branch order, exactly as running the branches one after another.
- **Shared H_{l-2} edges once**: edges fed by H_{l-2} see the same input in every branch, so they
  run once and their output is broadcast to every branch (statistics updated once per branch).
- **Aggregation folded into the concat**: the beta-weighted sum over branches is taken per block
  output before concatenating (sum and concat commute), so the per-branch concat is never built.
- Modes (:data:`FUSED_MODES`): mixed ops keep their conv outputs for backward (``keep``, fastest),
  recompute them in backward (``recompute``), or every node runs under activation checkpointing
  (``checkpoint``, least memory): only the node's inputs are saved, the whole node is recomputed in
  backward (its mixed ops then keep their conv outputs, for that node only), so the convolutions run
  twice forward, as in ``recompute``, while the node's BN/ReLU/pre-processing/resampling activations
  are not held either. The recompute leaves BatchNorm running statistics alone. ``balanced``:
  nodes at the two finest resolutions recompute, the coarser ones keep. Every level costs about the
  same convolution work (channels double as the side halves) but holds half the activations of the
  next finer one, so recomputing the two finest levels drops most of what ``keep`` holds for half
  of ``recompute``'s extra work.

Only the default op set (skip + Conv-BN-ReLU 3/5/7) has a fused mixed op; other op sets keep the
plain path.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from frsengine.nas.cell import SearchCell, edge_index, resample
from frsengine.nas.ops import ConvBR
from frsengine.ops.conv_stack import use_channels_last
from frsengine.ops.fused_mixed import DEFAULT_OP_NAMES, mixed_op_module_forward


def node_layout(x: torch.Tensor) -> torch.memory_format:
    """The layout a fused node computes in: channels_last where the mixed op's convolutions run
    channels_last (the CPU; ``FRSENGINE_CONV_LAYOUT``), so its kernels need no layout copies."""
    return torch.channels_last if use_channels_last(x.device) else torch.contiguous_format


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1)


def _interleave(ts: Sequence[torch.Tensor], fmt: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """G tensors (n, C, H, W) -> (n*G, C, H, W) with index i*G + g, in layout ``fmt`` (one copy)."""
    n, c, h, w = ts[0].shape
    if len(ts) == 1:
        out = ts[0]
    elif fmt == torch.channels_last:
        out = torch.stack([_nhwc(t) for t in ts], 1).reshape(n * len(ts), h, w, c).permute(0, 3, 1, 2)
    else:
        out = torch.stack(ts, 1).reshape(n * len(ts), c, h, w)
    return out.contiguous(memory_format=fmt)


def _repeat_groups(y: torch.Tensor, groups: int, fmt: torch.memory_format) -> torch.Tensor:
    """(n, C, H, W) -> (n*G, C, H, W), sample i repeated G times (index i*G + g), in layout ``fmt``."""
    n, c, h, w = y.shape
    if fmt == torch.channels_last:
        return _nhwc(y).unsqueeze(1).expand(n, groups, h, w, c).reshape(n * groups, h, w, c).permute(0, 3, 1, 2)
    return y.unsqueeze(1).expand(n, groups, c, h, w).reshape(n * groups, c, h, w)


def _branch_sum(s: torch.Tensor, w: torch.Tensor, n: int, fmt: torch.memory_format) -> torch.Tensor:
    """sum_g w[g] * s[i*G + g]: (n*G, C, H, W) -> (n, C, H, W) in layout ``fmt`` (summed over the
    NHWC view when channels_last: the result, and so what the next nodes compute in, stays NHWC)."""
    groups = w.shape[1]
    if fmt == torch.channels_last:
        _, c, h, wd = s.shape
        return (_nhwc(s).reshape(n, groups, h, wd, c) * w).sum(1).permute(0, 3, 1, 2)
    return (s.view(n, groups, *s.shape[1:]) * w).sum(1)


FUSED_MODES = ("keep", "recompute", "checkpoint", "balanced")


def node_mode(mode: str, size: Sequence[int], sizes: Sequence[Sequence[int]]) -> str:
    """The mode a node at ``size`` runs in, in a grid whose levels have ``sizes``: ``balanced``
    resolves to ``recompute`` at the two finest resolutions (>= a quarter of the finest's pixels)
    and to ``keep`` below; the other modes are the same everywhere."""
    if mode != "balanced":
        return mode
    finest = max(h * w for h, w in sizes)
    return "recompute" if 4 * size[0] * size[1] >= finest else "keep"


def _batch_norm(bn: nn.BatchNorm2d, z: torch.Tensor, update_stats: bool) -> torch.Tensor:
    """``bn(z)``; ``update_stats=False`` updates throwaway copies of the running statistics instead
    (the same kernel, so a checkpoint recompute gives bit-identical activations)."""
    if update_stats or not (bn.training and bn.track_running_stats):
        return bn(z)
    return F.batch_norm(z, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, True,
                        bn.momentum if bn.momentum is not None else 0.0, bn.eps)


def _bn_relu(pre: ConvBR, z: torch.Tensor, update_stats: bool) -> torch.Tensor:
    if pre.bn is not None:
        z = _batch_norm(pre.bn, z, update_stats)
    return F.relu(z) if pre.relu else z


def pre_branch(pre: ConvBR, x: torch.Tensor, size: Sequence[int], update_stats: bool = True) -> torch.Tensor:
    """``pre(resample(x, size))`` with the 1x1 conv at the lower of the two resolutions."""
    if x.shape[-2] * x.shape[-1] >= size[0] * size[1] or pre.conv.kernel_size != (1, 1):
        return _bn_relu(pre, pre.conv(resample(x, size)), update_stats)
    return _bn_relu(pre, resample(pre.conv(x), size), update_stats)


def fused_node(cell: SearchCell, prev_prev: torch.Tensor | None, branches: dict[str, torch.Tensor],
               alphas: torch.Tensor, betas: Sequence[torch.Tensor], size: Sequence[int],
               keep: bool = True, update_stats: bool = True) -> torch.Tensor:
    """The node output ``sum_b betas[b] * cell(prev_prev, branches, alphas, size)[b]``, fused.

    ``update_stats=False``: BatchNorm running statistics are left alone (checkpoint recompute)."""
    groups = len(cell.branches)
    s0 = None
    fmt = node_layout(next(iter(branches.values())))
    if cell.has_prev_prev:
        if prev_prev is None:
            raise ValueError("this cell was built with an H_{l-2} input but got None")
        s0 = _bn_relu(cell.pre_prev, cell.pre_prev.conv(resample(prev_prev, size)), update_stats)
        s0 = s0.contiguous(memory_format=fmt)
    s1 = _interleave([pre_branch(cell.pre[b], branches[b], size, update_stats) for b in cell.branches], fmt)
    n = s1.shape[0] // groups
    states = [s0, s1]
    for block in range(cell.steps):
        acc = None
        for src, h in enumerate(states):
            key = str(edge_index(block, src))
            if h is None or key not in cell.edges:
                continue
            edge, a = cell.edges[key], alphas[int(key)]
            if src == 0:
                y = mixed_op_module_forward(edge, h, a, groups=1, keep=keep, repeat_updates=groups,
                                            update_stats=update_stats)
                y = _repeat_groups(y, groups, fmt)
            else:
                y = mixed_op_module_forward(edge, h, a, groups=groups, keep=keep, update_stats=update_stats)
            acc = y if acc is None else acc + y
        states.append(acc)
    w = torch.stack(list(betas)).view(1, groups, 1, 1, 1)
    return torch.cat([_branch_sum(s, w, n, fmt) for s in states[-cell.block_multiplier:]], dim=1)


def checkpointed_node(cell: SearchCell, prev_prev: torch.Tensor | None, branches: dict[str, torch.Tensor],
                      alphas: torch.Tensor, betas: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """:func:`fused_node` under activation checkpointing: nothing inside the node is saved for
    backward; the backward reruns the node (keeping its conv outputs) without updating BatchNorm
    running statistics a second time."""
    if not torch.is_grad_enabled():
        return fused_node(cell, prev_prev, branches, alphas, betas, size, keep=False)
    calls = [0]

    def run(prev_prev, branches, alphas, betas):
        calls[0] += 1
        # keep=True in the first forward too (its kept conv outputs are dropped at once): the
        # non-reentrant checkpoint requires the rerun to save the same tensors as the forward.
        return fused_node(cell, prev_prev, branches, alphas, betas, size, keep=True, update_stats=calls[0] == 1)

    # The nodes draw no random numbers: no RNG state to save per node and restore in the rerun.
    return checkpoint(run, prev_prev, branches, alphas, betas, use_reentrant=False, preserve_rng_state=False)


def fusable(cell: nn.Module) -> bool:
    return isinstance(cell, SearchCell) and all(
        tuple(e.op_names) == DEFAULT_OP_NAMES for e in cell.edges.values())


def use_fused_search(model: nn.Module, enabled: bool = True, mode: str = "keep") -> int:
    """Switch every grid search space inside ``model`` to the fused path (or back), in ``mode``
    (one of :data:`FUSED_MODES`, see the module docstring).

    Returns how many spaces were switched (those with the default op set).
    """
    from frsengine.nas.grid import GridSearchSpace
    if mode not in FUSED_MODES:
        raise ValueError(f"fused mode {mode!r}: expected one of {', '.join(FUSED_MODES)}")
    count = 0
    for m in model.modules():
        if isinstance(m, GridSearchSpace) and all(fusable(c) for c in m.cells.values()):
            m.fused = enabled
            m.fused_mode = mode
            count += 1
    return count


def run_fused_node(mode: str, cell: SearchCell, prev_prev: torch.Tensor | None, branches: dict[str, torch.Tensor],
                   alphas: torch.Tensor, betas: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """One grid node on the fused path in ``mode``."""
    if mode == "checkpoint":
        return checkpointed_node(cell, prev_prev, branches, alphas, betas, size)
    return fused_node(cell, prev_prev, branches, alphas, betas, size, keep=mode == "keep")


@contextlib.contextmanager
def frozen(params: Iterable[nn.Parameter]):
    """Turn off ``requires_grad`` of ``params`` inside the block (the architecture step of a
    first-order search needs no weight gradients: convolutions then skip their weight backward)."""
    params = [p for p in params if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
