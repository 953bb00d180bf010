"""A derived space is the supernet restricted to its path and chosen ops.

With one-hot alpha/beta (softmax of +-1e4 is exactly 1/0 in float32) and the DARTS 'none' op on every
unchosen edge, the supernet's last path node, brought to the output by the shared head chain, equals
the derived network's output (shared weights), provided every H_{l-2} a path cell sees in the supernet
is itself on the path (constant paths here; elsewhere the derived net drops it by design). This checks
resampling, branch pre-processing, block wiring, the H_{l-2} rule and the output chains of both builders.
(The supernet's full output also sums the other last-layer nodes, so it is not compared.)
"""
import pytest
import torch

from frsengine.nas.cell import edge_index
from frsengine.nas.grid import GridPathNet, GridSearchSpace, branch_name, node_exists
from frsengine.nas.space import SpaceConfig

EDGES = ((0, 0, "skip_connect"), (0, 1, "sep_conv_3x3"), (1, 1, "dil_conv_3x3"), (1, 2, "avg_pool_3x3"))


def one_hot_supernet(cfg, path):
    space = GridSearchSpace(cfg)
    names = space.op_set.names
    with torch.no_grad():
        space.alphas.fill_(-1e4)
        chosen = {edge_index(b, i): op for b, i, op in EDGES}
        for e in range(space.alphas.shape[0]):
            space.alphas[e, names.index(chosen.get(e, "none"))] = 1e4
        space.betas.fill_(-1e4)
        levels = [0, *path]   # levels[l] = path level at layer l-1
        for layer in range(cfg.layers):
            for j in range(cfg.levels):
                if not node_exists(layer - 1, j, cfg.levels):
                    continue
                targets = [t for t in (j - 1, j, j + 1) if node_exists(layer, t, cfg.levels)]
                on_path = j == levels[layer]
                t = path[layer] if on_path else next(t for t in targets if t != path[layer])
                space.betas[layer, j, t - j + 1] = 1e4
    return space


def share_weights(space, net, path):
    net.stem.load_state_dict(space.stem.state_dict())
    levels = [0, *path]
    for layer, (k, cell) in enumerate(zip(path, net.cells)):
        sc = space.cells[f"l{layer}_k{k}"]
        cell.pre.load_state_dict(sc.pre[branch_name(levels[layer], k, space.cfg.orientation)].state_dict())
        if cell.has_prev_prev:
            cell.pre_prev.load_state_dict(sc.pre_prev.state_dict())
        for b, i, op in cell.edge_list:
            mixed = sc.edges[str(edge_index(b, i))]
            cell.ops[f"{b}_{i}"].load_state_dict(mixed.ops[mixed.op_names.index(op)].state_dict())
    for k, mod in net.head.reduce.items():
        mod.load_state_dict(space.head.reduce[k].state_dict())
    net.head.last.load_state_dict(space.head.last.state_dict())


@pytest.mark.parametrize("kind,path,size", [("prior", (0, 0, 0, 0), 16), ("prior", (1, 1, 1, 1), 16),
                                            ("upsample", (1, 1, 1, 1), 4), ("upsample", (1, 2, 2, 2, 2), 3),
                                            ("fusion", (0, 0, 0), 12)])
def test_supernet_with_one_hot_arch_equals_the_derived_space(kind, path, size):
    in_ch = 3
    cfg = SpaceConfig(kind, in_ch, 8, layers=len(path), steps=2, block_multiplier=2, op_set="large")
    space = one_hot_supernet(cfg, path)
    net = GridPathNet(cfg, path, EDGES)
    share_weights(space, net, path)
    x = torch.randn(2, in_ch, size, size)
    nodes, sizes = space.last_nodes(x)
    restricted = space.head.last(space.head.chain(path[-1], nodes[path[-1]], sizes))
    torch.testing.assert_close(restricted, net(x), atol=1e-5, rtol=1e-5)
