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
- Mixed ops keep (``keep=True``) or recompute (``keep=False``) their conv outputs in backward.

Only the default op set (skip + Conv-BN-ReLU 3/5/7) has a fused mixed op; other op sets keep the
plain path.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from frsengine.nas.cell import SearchCell, edge_index, resample
from frsengine.nas.ops import ConvBR
from frsengine.ops.fused_mixed import DEFAULT_OP_NAMES, mixed_op_module_forward


def _interleave(ts: Sequence[torch.Tensor]) -> torch.Tensor:
    """G tensors (n, C, H, W) -> (n*G, C, H, W) with index i*G + g."""
    if len(ts) == 1:
        return ts[0]
    n, c, h, w = ts[0].shape
    return torch.stack(ts, 1).reshape(n * len(ts), c, h, w)


def pre_branch(pre: ConvBR, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``pre(resample(x, size))`` with the 1x1 conv at the lower of the two resolutions."""
    if x.shape[-2] * x.shape[-1] >= size[0] * size[1] or pre.conv.kernel_size != (1, 1):
        return pre(resample(x, size))
    z = resample(pre.conv(x), size)
    if pre.bn is not None:
        z = pre.bn(z)
    return F.relu(z) if pre.relu else z


def fused_node(cell: SearchCell, prev_prev: torch.Tensor | None, branches: dict[str, torch.Tensor],
               alphas: torch.Tensor, betas: Sequence[torch.Tensor], size: Sequence[int],
               keep: bool = True) -> torch.Tensor:
    """The node output ``sum_b betas[b] * cell(prev_prev, branches, alphas, size)[b]``, fused."""
    groups = len(cell.branches)
    s0 = None
    if cell.has_prev_prev:
        if prev_prev is None:
            raise ValueError("this cell was built with an H_{l-2} input but got None")
        s0 = cell.pre_prev(resample(prev_prev, size))
    s1 = _interleave([pre_branch(cell.pre[b], branches[b], size) for b in cell.branches])
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
                y = mixed_op_module_forward(edge, h, a, groups=1, keep=keep, repeat_updates=groups)
                y = y.unsqueeze(1).expand(n, groups, *y.shape[1:]).reshape(n * groups, *y.shape[1:])
            else:
                y = mixed_op_module_forward(edge, h, a, groups=groups, keep=keep)
            acc = y if acc is None else acc + y
        states.append(acc)
    w = torch.stack(list(betas)).view(1, groups, 1, 1, 1)
    outs = [(s.view(n, groups, *s.shape[1:]) * w).sum(1) for s in states[-cell.block_multiplier:]]
    return torch.cat(outs, dim=1)


def fusable(cell: nn.Module) -> bool:
    return isinstance(cell, SearchCell) and all(
        tuple(e.op_names) == DEFAULT_OP_NAMES for e in cell.edges.values())


def use_fused_search(model: nn.Module, enabled: bool = True, keep: bool = True) -> int:
    """Switch every grid search space inside ``model`` to the fused path (or back).

    Returns how many spaces were switched (those with the default op set).
    """
    from frsengine.nas.grid import GridSearchSpace
    count = 0
    for m in model.modules():
        if isinstance(m, GridSearchSpace) and all(fusable(c) for c in m.cells.values()):
            m.fused = enabled
            m.fused_keep = keep
            count += 1
    return count


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
