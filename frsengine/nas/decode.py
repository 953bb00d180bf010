"""Decoding a supernet into a genotype (Sec. 3.3, Algorithm 1 line 7).

Cell: per block keep the two incoming edges whose strongest op weight is largest and give each kept
edge its argmax op (DARTS). Zero ops ('none') never count. Edge ranking is configurable:
``strongest`` (DARTS: skip counts) or ``strongest_non_skip`` (the authors' variant: rank edges by
their strongest non-skip op; the kept edge still gets its argmax op, skip allowed).

Network: the max-probability path through the grid (Viterbi over the normalised betas, as in
Auto-DeepLab), starting at the stem (level 0) and ending at the best last-layer node. Levels are
numbered from the space's input level in every space, so the same decoder serves the upsampling
space (levels go finer) and the prior/fusion spaces (levels go coarser): no mirrored copy needed.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from frsengine.nas.cell import edge_index
from frsengine.nas.genotype import Genotype, SpaceGenotype, validate_genotype
from frsengine.nas.grid import GridSearchSpace, beta_mask, node_exists, normalize_betas
from frsengine.nas.ops import OpSet, get_op_set


def _rank_strongest(w: torch.Tensor, op_set: OpSet) -> float:
    return max(float(w[n]) for n, name in enumerate(op_set.names) if name not in op_set.zero_ops)


def _rank_strongest_non_skip(w: torch.Tensor, op_set: OpSet) -> float:
    excluded = op_set.zero_ops | op_set.skip_ops
    return max(float(w[n]) for n, name in enumerate(op_set.names) if name not in excluded)


EDGE_RANKINGS: dict[str, Callable[[torch.Tensor, OpSet], float]] = {
    "strongest": _rank_strongest,
    "strongest_non_skip": _rank_strongest_non_skip,
}


def decode_cell(alphas: torch.Tensor, op_set: OpSet | str, steps: int,
                ranking: str = "strongest") -> tuple[tuple[int, int, str], ...]:
    """Cell genotype from a (num_edges, num_ops) alpha matrix (raw or softmaxed: same result).

    Returns sorted (block, input, op) triples, two per block. Ties go to the lower index.
    """
    op_set = get_op_set(op_set) if isinstance(op_set, str) else op_set
    if ranking not in EDGE_RANKINGS:
        raise KeyError(f"unknown edge ranking {ranking!r}; known: {', '.join(EDGE_RANKINGS)}")
    rank = EDGE_RANKINGS[ranking]
    w = torch.softmax(alphas.detach().double().cpu(), dim=-1)
    allowed = [n for n, name in enumerate(op_set.names) if name not in op_set.zero_ops]
    edges = []
    for block in range(steps):
        rows = [(src, w[edge_index(block, src)]) for src in range(2 + block)]
        # sorted() is stable: equal strengths keep the lower input first.
        kept = sorted(rows, key=lambda r: -rank(r[1], op_set))[:2]
        for src, row in kept:
            best = max(allowed, key=lambda n: (float(row[n]), -n))
            edges.append((block, src, op_set.names[best]))
    return tuple(sorted(edges))


def decode_path(betas: torch.Tensor, levels: int | None = None) -> tuple[int, ...]:
    """Max-probability path (level per layer) through normalised betas of shape (L, levels, 3).

    ``betas[l, j, d]`` is the weight of the arrow from level j at layer l-1 to level j+d-1 at layer
    l; slots of arrows that do not exist must be 0 (as :func:`normalize_betas` returns them).
    """
    b = betas.detach().double().cpu()
    L, K = b.shape[0], levels or b.shape[1]
    prob = {0: 1.0}
    back: list[dict[int, int]] = []
    for layer in range(L):
        new, ptr = {}, {}
        for k in range(K):
            if not node_exists(layer, k, K):
                continue
            best = None
            for j in (k - 1, k, k + 1):
                if j not in prob:
                    continue
                p = prob[j] * float(b[layer, j, k - j + 1])
                if best is None or p > best[0]:
                    best = (p, j)
            if best is not None:
                new[k], ptr[k] = best
        prob = new
        back.append(ptr)
    end = max(sorted(prob), key=lambda k: prob[k])
    path = [end]
    for layer in range(L - 1, 0, -1):
        path.append(back[layer][path[-1]])
    return tuple(reversed(path))


def decode_space(space: GridSearchSpace, ranking: str = "strongest") -> SpaceGenotype:
    """Genotype of one supernet space."""
    cfg = space.cfg
    # The mask is rebuilt here so decoding also works on a supernet built on the meta device
    # whose alpha/beta alone were materialised (see `frsengine genotype decode`).
    betas = normalize_betas(space.betas.detach(), beta_mask(cfg.layers, cfg.levels), cfg.border_beta_scale)
    return SpaceGenotype(
        kind=cfg.kind,
        path=decode_path(betas, cfg.levels),
        cell=decode_cell(space.alphas, space.op_set, cfg.steps, ranking),
        block_multiplier=cfg.block_multiplier, op_set=cfg.op_set, levels=cfg.levels)


def decode(model, ranking: str = "strongest", meta: dict[str, Any] | None = None) -> Genotype:
    """Genotype of a supernet (``FRSNetSearch`` / ``MFPSNetSearch``: anything with ``network_name``
    and ``search_spaces()`` returning name -> GridSearchSpace)."""
    spaces = {name: decode_space(sp, ranking) for name, sp in model.search_spaces().items()}
    g = Genotype(network=model.network_name, spaces=spaces,
                 meta={"edge_ranking": ranking, **(meta or {})})
    validate_genotype(g)
    return g
