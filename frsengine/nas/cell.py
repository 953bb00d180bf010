"""Cells (Eq. 1-3): B blocks fed by H_{l-2}, H_{l-1} and the earlier blocks; output = concat of the
last ``block_multiplier`` block outputs.

Input numbering used everywhere (supernet, genotype, derived cell): input 0 = H_{l-2},
input 1 = H_{l-1}, input 2+j = output of block j. Block i has 2+i incoming edges; edges are
numbered block by block (block 0: edges 0-1, block 1: edges 2-4, block 2: edges 5-8, ...), which is
also the row order of the alpha matrix.

Supernet dataflow (the authors' ``cell_level_search.Cell``, kept explicit because fused kernels are
written against it): each incoming branch (from the finer level 'down', the same level 'same' or
the coarser level 'up') is resampled to the node's size (bilinear, align_corners=True) and passed
through its own 1x1 ConvBR; then the *same* block ops (same modules, same alpha) run on every branch
together with the shared, pre-processed H_{l-2}; the cell returns one output per branch and the
grid combines them with :func:`aggregate_branches` (the beta-weighted sum of Eq. 4).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from frsengine.nas.ops import ConvBR, MixedOp, OpSet

# Branch order = the authors' order (down, same, up); BN running statistics of the shared block ops
# are updated once per branch in this order.
BRANCHES = ("down", "same", "up")


def num_edges(steps: int) -> int:
    """Number of cell edges (alpha rows) for ``steps`` blocks."""
    return sum(2 + i for i in range(steps))


def edge_index(block: int, source: int) -> int:
    """Alpha row of the edge from input ``source`` into block ``block``."""
    return block * (block + 3) // 2 + source


def resample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize with align_corners=True (the authors' choice); identity when sizes match."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def aggregate_branches(outputs: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Reference beta-weighted sum of the per-branch cell outputs of one grid node (Eq. 4)."""
    out = weights[0] * outputs[0]
    for w, y in zip(weights[1:], outputs[1:]):
        out = out + w * y
    return out


class SearchCell(nn.Module):
    """Supernet cell of one grid node.

    Args:
        steps: number of blocks B.
        block_multiplier: how many of the last block outputs are concatenated (<= B).
        channels: per-block width C (the cell outputs ``block_multiplier * C`` channels).
        prev_prev_channels: channels of H_{l-2}, or None when this node never has one.
        branch_channels: input channels of each incoming branch, keyed by 'down' / 'same' / 'up'.
        op_set: candidate ops of every edge.
    """

    def __init__(self, steps: int, block_multiplier: int, channels: int,
                 prev_prev_channels: int | None, branch_channels: dict[str, int], op_set: OpSet):
        super().__init__()
        if not 1 <= block_multiplier <= steps:
            raise ValueError(f"block_multiplier must be in 1..{steps}, got {block_multiplier}")
        unknown = set(branch_channels) - set(BRANCHES)
        if unknown or not branch_channels:
            raise ValueError(f"branches must be a non-empty subset of {BRANCHES}, got {sorted(branch_channels)}")
        self.steps = steps
        self.block_multiplier = block_multiplier
        self.has_prev_prev = prev_prev_channels is not None
        self.pre_prev = ConvBR(prev_prev_channels, channels, 1) if self.has_prev_prev else None
        self.branches = tuple(b for b in BRANCHES if b in branch_channels)
        self.pre = nn.ModuleDict({b: ConvBR(branch_channels[b], channels, 1) for b in self.branches})
        # Edges from H_{l-2} exist only where this node has an H_{l-2}: no unused weights.
        self.edges = nn.ModuleDict()
        for block in range(steps):
            for src in range(2 + block):
                if src == 0 and not self.has_prev_prev:
                    continue
                self.edges[str(edge_index(block, src))] = MixedOp(channels, op_set)

    def forward(self, prev_prev: torch.Tensor | None, branches: dict[str, torch.Tensor],
                alphas: torch.Tensor, size: Sequence[int]) -> list[torch.Tensor]:
        """Return one cell output per branch, in :data:`BRANCHES` order.

        ``alphas`` is the softmax-normalised (num_edges, num_ops) matrix shared by the whole space.
        """
        s0 = None
        if self.has_prev_prev:
            if prev_prev is None:
                raise ValueError("this cell was built with an H_{l-2} input but got None")
            s0 = self.pre_prev(resample(prev_prev, size))
        outputs = []
        for name in self.branches:
            s1 = self.pre[name](resample(branches[name], size))
            outputs.append(self._blocks(s0, s1, alphas))
        return outputs

    def _blocks(self, s0, s1, alphas):
        states = [s0, s1]
        for block in range(self.steps):
            acc = None
            for src, h in enumerate(states):
                key = str(edge_index(block, src))
                if h is None or key not in self.edges:
                    continue
                y = self.edges[key](h, alphas[int(key)])
                acc = y if acc is None else acc + y
            states.append(acc)
        return torch.cat(states[-self.block_multiplier:], dim=1)


class DerivedCell(nn.Module):
    """Cell of a derived network: one incoming branch and only the genotype's (block, input, op) edges.

    Args:
        edges: sequence of (block, input, op) triples, two per block.
        prev_prev_channels: channels of H_{l-2}, or None when the path has no H_{l-2} here; edges
            from input 0 are then dropped (the same rule as in the supernet).
    """

    def __init__(self, edges: Sequence[tuple[int, int, str]], block_multiplier: int, channels: int,
                 prev_prev_channels: int | None, in_channels: int, op_set: OpSet):
        super().__init__()
        self.steps = 1 + max(b for b, _, _ in edges)
        if not 1 <= block_multiplier <= self.steps:
            raise ValueError(f"block_multiplier must be in 1..{self.steps}, got {block_multiplier}")
        self.block_multiplier = block_multiplier
        self.has_prev_prev = prev_prev_channels is not None
        self.pre_prev = ConvBR(prev_prev_channels, channels, 1) if self.has_prev_prev else None
        self.pre = ConvBR(in_channels, channels, 1)
        self.edge_list = [(b, i, op) for b, i, op in sorted(edges) if i != 0 or self.has_prev_prev]
        self.ops = nn.ModuleDict({f"{b}_{i}": op_set.build(op, channels) for b, i, op in self.edge_list})

    def forward(self, prev_prev: torch.Tensor | None, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        s0 = self.pre_prev(resample(prev_prev, size)) if self.has_prev_prev else None
        states = [s0, self.pre(resample(x, size))]
        for block in range(self.steps):
            acc = None
            for b, i, _ in self.edge_list:
                if b == block:
                    y = self.ops[f"{b}_{i}"](states[i])
                    acc = y if acc is None else acc + y
            states.append(acc)
        return torch.cat(states[-self.block_multiplier:], dim=1)
