"""Network-level grid (Eq. 4-5), one builder for the upsampling, prior and fusion spaces.

Grid geometry (levels are numbered from the input's level, so both orientations share it):
- the stem output is node (layer -1, level 0); node (l, k) exists for l in 0..L-1 and k <= l+1
  ("rate 2^k exists from layer k-1");
- arrows go from (l-1, j) to (l, j-1), (l, j), (l, j+1) where the target exists;
- beta is a (L, levels, 3) tensor: ``beta[l, j, d]`` weights the arrow leaving source (l-1, j)
  towards level j-1 (d=0), j (d=1), j+1 (d=2). Only the slots of real arrows are used (45 of 72 for
  L=6); Eq. 5 normalises them by a softmax over each *source* node's outgoing arrows. Border nodes
  have a 2-way softmax, optionally scaled by ``border_beta_scale`` (the authors use 2/3; the default
  1.0 follows Eq. 5 as written). Unused slots are exactly 0, never random.

H_{l-2} rule (supernet and derived network alike): the cell at (l, k) receives the node at the same
level two layers back, (l-2, k) (the stem for (1, 0)), when the network has that node; otherwise its
H_{l-2} edges are dropped. A derived network is thus exactly the supernet restricted to its path:
it has an H_{l-2} input at layer l only when the path was at the same level at layer l-2.

Output: every level's node is brought to the finest level by a chain of (1x1 ConvBR to the next
finer level's width, bilinear resize) steps whose modules are shared between chains (the authors'
``last_8/last_4/last_2``), then one 1x1 conv (``last_1``). The supernet sums all last-layer nodes;
a derived network uses the chain from where its path ends, so a path ending below the finest level
still reaches it (e.g. an upsampling path ending at 64x64 gets one ConvBR + x2 resize to 128x128).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from frsengine.nas.cell import DerivedCell, SearchCell, aggregate_branches, num_edges, resample
from frsengine.nas.fused import node_mode, run_fused_node
from frsengine.nas.ops import ConvBR, get_op_set
from frsengine.nas.space import SpaceConfig

_BIG_NEGATIVE = -1e30


def node_exists(layer: int, level: int, levels: int) -> bool:
    """Whether grid node (layer, level) exists; layer -1 is the stem (level 0 only)."""
    if layer == -1:
        return level == 0
    return 0 <= level < levels and level <= layer + 1


def beta_mask(layers: int, levels: int = 4) -> torch.Tensor:
    """Boolean (layers, levels, 3) mask of the beta slots that belong to a real arrow."""
    mask = torch.zeros(layers, levels, 3, dtype=torch.bool)
    for layer in range(layers):
        for src in range(levels):
            if not node_exists(layer - 1, src, levels):
                continue
            for d in range(3):
                if node_exists(layer, src + d - 1, levels):
                    mask[layer, src, d] = True
    return mask


def normalize_betas(betas: torch.Tensor, mask: torch.Tensor, border_scale: float = 1.0) -> torch.Tensor:
    """Eq. 5: softmax over each source node's outgoing arrows; unused slots are 0.

    Rows with exactly two arrows (border nodes) are multiplied by ``border_scale``.
    """
    mask = mask.to(betas.device)
    # A finite fill keeps rows without any arrow NaN-free (their softmax is then zeroed by the mask).
    w = F.softmax(betas.masked_fill(~mask, _BIG_NEGATIVE), dim=-1) * mask
    if border_scale != 1.0:
        two_way = (mask.sum(-1, keepdim=True) == 2).to(w.dtype)
        w = w * (1.0 + (border_scale - 1.0) * two_way)
    return w


def path_problem(path: Sequence[int], levels: int = 4) -> str | None:
    """Why ``path`` (level per layer, starting after the stem at level 0) is not a grid path, or None."""
    prev = 0
    for layer, k in enumerate(path):
        if not isinstance(k, int) or isinstance(k, bool):
            return f"layer {layer}: level must be an integer, got {k!r}"
        if not 0 <= k < levels:
            return f"layer {layer}: level {k} outside 0..{levels - 1}"
        if abs(k - prev) > 1:
            return f"layer {layer}: path jumps from level {prev} to {k} (at most one level per layer)"
        if not node_exists(layer, k, levels):
            return f"layer {layer}: level {k} does not exist yet (level k starts at layer k-1)"
        prev = k
    return None


def level_sizes(size: Sequence[int], levels: int, orientation: str) -> list[tuple[int, int]]:
    """Spatial size of every level for an input of ``size`` at level 0."""
    h, w = int(size[0]), int(size[1])
    out = [(h, w)]
    for _ in range(levels - 1):
        if orientation == "up":
            h, w = 2 * h, 2 * w
        else:
            # The authors' scale_dimension(dim, 0.5): odd sizes keep both border samples.
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        out.append((h, w))
    return out


def branch_name(src: int, dst: int, orientation: str) -> str:
    """Which resampling an arrow src -> dst level applies: 'down', 'same' or 'up'."""
    if src == dst:
        return "same"
    finer_src = (src < dst) if orientation == "down" else (src > dst)
    return "down" if finer_src else "up"


def finest_level(cfg: SpaceConfig) -> int:
    return 0 if cfg.orientation == "down" else cfg.levels - 1


class OutputHead(nn.Module):
    """Brings level nodes to the finest level (shared 1x1 ConvBR + bilinear chains, then last 1x1)."""

    def __init__(self, cfg: SpaceConfig, start_levels: Sequence[int]):
        super().__init__()
        self.cfg = cfg
        ch = cfg.level_channels()
        self.finest = finest_level(cfg)
        self.step = -1 if self.finest == 0 else 1
        needed = set()
        for k in start_levels:
            while k != self.finest:
                needed.add(k)
                k += self.step
        self.reduce = nn.ModuleDict({str(k): ConvBR(ch[k], ch[k + self.step], 1) for k in sorted(needed)})
        self.last = ConvBR(ch[self.finest], ch[self.finest], 1, bn=False, relu=False)

    def chain(self, level: int, x: torch.Tensor, sizes) -> torch.Tensor:
        while level != self.finest:
            x = resample(self.reduce[str(level)](x), sizes[level + self.step])
            level += self.step
        return x

    def forward(self, nodes: dict[int, torch.Tensor], sizes) -> torch.Tensor:
        total = None
        for k in sorted(nodes):
            y = self.chain(k, nodes[k], sizes)
            total = y if total is None else total + y
        # `last` is linear and bias-free, so applying it once to the sum equals the authors'
        # sum of per-chain applications.
        return self.last(total)


def _stem(cfg: SpaceConfig) -> ConvBR:
    return ConvBR(cfg.in_channels, cfg.level_channels()[0], 3)


class GridSearchSpace(nn.Module):
    """Supernet of one space: every grid node, softmax-alpha mixed ops and beta-weighted arrows."""

    def __init__(self, cfg: SpaceConfig):
        super().__init__()
        self.cfg = cfg
        self.op_set = get_op_set(cfg.op_set)
        L, K = cfg.layers, cfg.levels
        filters, ch = cfg.level_filters(), cfg.level_channels()
        self.stem = _stem(cfg)
        self.cells = nn.ModuleDict()
        for layer in range(L):
            for k in range(K):
                if not node_exists(layer, k, K):
                    continue
                branches = {branch_name(j, k, cfg.orientation): ch[j]
                            for j in (k - 1, k, k + 1) if node_exists(layer - 1, j, K)}
                pp = ch[k] if node_exists(layer - 2, k, K) else None
                self.cells[f"l{layer}_k{k}"] = SearchCell(
                    cfg.steps, cfg.block_multiplier, filters[k], pp, branches, self.op_set)
        self.head = OutputHead(cfg, [k for k in range(K) if node_exists(L - 1, k, K)])
        self.register_buffer("beta_mask", beta_mask(L, K), persistent=False)
        self.alphas = nn.Parameter(cfg.arch_init_std * torch.randn(num_edges(cfg.steps), len(self.op_set)))
        self.betas = nn.Parameter(cfg.arch_init_std * torch.randn(L, K, 3))
        # Plain cells by default; frsengine.nas.fused.use_fused_search switches to the fused path.
        self.fused = False
        self.fused_mode = "keep"

    def normalized_alphas(self) -> torch.Tensor:
        return F.softmax(self.alphas, dim=-1)

    def normalized_betas(self) -> torch.Tensor:
        return normalize_betas(self.betas, self.beta_mask, self.cfg.border_beta_scale)

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas, self.betas]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes, sizes = self.last_nodes(x)
        return self.head(nodes, sizes)

    def last_nodes(self, x: torch.Tensor) -> tuple[dict[int, torch.Tensor], list[tuple[int, int]]]:
        """Last-layer node outputs by level, and the spatial size of every level."""
        cfg = self.cfg
        sizes = level_sizes(x.shape[-2:], cfg.levels, cfg.orientation)
        alphas, betas = self.normalized_alphas(), self.normalized_betas()
        prev_prev: dict[int, torch.Tensor] = {}
        prev = {0: self.stem(x)}
        for layer in range(cfg.layers):
            cur = {}
            for k in range(cfg.levels):
                if not node_exists(layer, k, cfg.levels):
                    continue
                cell = self.cells[f"l{layer}_k{k}"]
                sources = {branch_name(j, k, cfg.orientation): j for j in (k - 1, k, k + 1) if j in prev}
                inputs = {b: prev[j] for b, j in sources.items()}
                weights = [betas[layer, sources[b], k - sources[b] + 1] for b in cell.branches]
                if self.fused:
                    cur[k] = run_fused_node(node_mode(self.fused_mode, sizes[k], sizes), cell, prev_prev.get(k),
                                            inputs, alphas, weights, sizes[k])
                else:
                    cur[k] = aggregate_branches(cell(prev_prev.get(k), inputs, alphas, sizes[k]), weights)
            prev_prev, prev = prev, cur
        return prev, sizes


class GridPathNet(nn.Module):
    """Derived space: one cell per layer along ``path`` (level per layer), genotype ops only."""

    def __init__(self, cfg: SpaceConfig, path: Sequence[int], edges: Sequence[tuple[int, int, str]]):
        super().__init__()
        if len(path) != cfg.layers:
            raise ValueError(f"path has {len(path)} layers, the space config {cfg.layers}")
        problem = path_problem([int(p) for p in path], cfg.levels)
        if problem:
            raise ValueError(f"bad path {list(path)}: {problem}")
        self.cfg = cfg
        self.path = [int(p) for p in path]
        op_set = get_op_set(cfg.op_set)
        filters, ch = cfg.level_filters(), cfg.level_channels()
        full = [0] + self.path  # full[i] = level at layer i-1 (the stem is layer -1, level 0)
        self.stem = _stem(cfg)
        self.cells = nn.ModuleList()
        for layer, k in enumerate(self.path):
            pp = ch[k] if layer >= 1 and full[layer - 1] == k else None
            self.cells.append(DerivedCell(edges, cfg.block_multiplier, filters[k], pp, ch[full[layer]], op_set))
        self.head = OutputHead(cfg, [self.path[-1]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = level_sizes(x.shape[-2:], self.cfg.levels, self.cfg.orientation)
        states = [self.stem(x)]  # states[i] = node of layer i-1
        for layer, (k, cell) in enumerate(zip(self.path, self.cells)):
            pp = states[layer - 1] if cell.has_prev_prev else None
            states.append(cell(pp, states[layer], sizes[k]))
        return self.head({self.path[-1]: states[-1]}, sizes)
