import pytest
import torch

from frsengine.nas.cell import num_edges
from frsengine.nas.grid import (GridPathNet, GridSearchSpace, beta_mask, level_sizes, node_exists,
                                normalize_betas, path_problem)
from frsengine.nas.space import SpaceConfig


def tiny(kind, **kw):
    base = dict(layers=3, steps=2, block_multiplier=2)
    base.update(kw)
    if kind == "upsample":
        return SpaceConfig(kind, 6, base.pop("filter_multiplier", 8), **base)
    return SpaceConfig(kind, 3, base.pop("filter_multiplier", 2), **base)


def test_beta_mask_uses_45_of_72_slots_for_six_layers():
    mask = beta_mask(6, 4)
    assert mask.shape == (6, 4, 3) and int(mask.sum()) == 45
    # layer 0: only the stem (level 0) has arrows, to level 0 and level 1
    assert mask[0].nonzero().tolist() == [[0, 1], [0, 2]]
    # the top level never has an upward arrow, level 0 never a downward one
    assert not mask[:, 3, 2].any() and not mask[:, 0, 0].any()


def test_normalize_betas_softmax_per_source_node_eq5():
    mask = beta_mask(6, 4)
    betas = torch.randn(6, 4, 3)
    w = normalize_betas(betas, mask)
    assert torch.all(w[~mask] == 0)
    sums = w.sum(-1)
    has_arrow = mask.any(-1)
    torch.testing.assert_close(sums[has_arrow], torch.ones(int(has_arrow.sum())))
    assert torch.all(sums[~has_arrow] == 0)
    # each row is the softmax over exactly its valid slots
    l, j = 3, 1
    torch.testing.assert_close(w[l, j], torch.softmax(betas[l, j], 0))
    torch.testing.assert_close(w[l, 0, 1:], torch.softmax(betas[l, 0, 1:], 0))
    torch.testing.assert_close(w[l, 3, :2], torch.softmax(betas[l, 3, :2], 0))


def test_border_scale_applies_to_two_way_rows_only():
    mask = beta_mask(6, 4)
    betas = torch.randn(6, 4, 3)
    w1, w23 = normalize_betas(betas, mask), normalize_betas(betas, mask, 2 / 3)
    two = mask.sum(-1) == 2
    torch.testing.assert_close(w23[two], w1[two] * 2 / 3)
    torch.testing.assert_close(w23[~two], w1[~two])


def test_level_sizes_both_orientations():
    assert level_sizes((16, 16), 4, "up") == [(16, 16), (32, 32), (64, 64), (128, 128)]
    assert level_sizes((36, 20), 4, "down") == [(36, 20), (18, 10), (9, 5), (5, 3)]


@pytest.mark.parametrize("kind,size,out_size", [
    ("upsample", 4, 32), ("upsample", 6, 48), ("upsample", 5, 40),
    ("prior", 32, 32), ("prior", 20, 20), ("prior", 18, 18),
    ("fusion", 24, 24), ("fusion", 17, 17)])
def test_search_space_output_shapes(kind, size, out_size):
    cfg = tiny(kind)
    space = GridSearchSpace(cfg)
    y = space(torch.randn(2, cfg.in_channels, size, size + 2))
    extra = 2 * (out_size // size)
    assert y.shape == (2, cfg.out_channels, out_size, out_size + extra)


@pytest.mark.parametrize("kind", ["upsample", "prior", "fusion"])
def test_gradients_reach_every_alpha_used_beta_and_weight(kind):
    cfg = tiny(kind, layers=4)
    space = GridSearchSpace(cfg)
    size = 4 if kind == "upsample" else 16
    space(torch.randn(2, cfg.in_channels, size, size)).square().mean().backward()
    assert space.alphas.grad.shape == (num_edges(2), 4)
    assert torch.all(space.alphas.grad != 0)
    mask = beta_mask(4, 4)
    assert torch.all(space.betas.grad[mask] != 0)
    assert torch.all(space.betas.grad[~mask] == 0)
    for name, p in space.named_parameters():
        if name in ("alphas", "betas"):
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_h_l2_edges_exist_only_where_the_same_level_node_two_layers_back_exists():
    space = GridSearchSpace(tiny("prior", layers=4))
    for key, cell in space.cells.items():
        layer, level = int(key[1]), int(key.split("_k")[1])
        assert cell.has_prev_prev == node_exists(layer - 2, level, 4), key
        assert ("0" in cell.edges) == cell.has_prev_prev


def test_path_net_prev_prev_follows_the_same_rule():
    cfg = tiny("prior", layers=5)
    net = GridPathNet(cfg, [0, 0, 1, 0, 0], [(0, 0, "conv_3x3"), (0, 1, "skip_connect"),
                                             (1, 1, "conv_5x5"), (1, 2, "conv_7x7")])
    # stem(level 0), then levels 0,0,1,0,0: H_{l-2} exists at layers 1 (stem), 3 (layer 1), 4? no (layer 2 at 1)
    assert [c.has_prev_prev for c in net.cells] == [False, True, False, True, False]
    y = net(torch.randn(1, 3, 16, 16))
    assert y.shape == (1, cfg.out_channels, 16, 16)


@pytest.mark.parametrize("path,msg", [([0, 2, 2], "jumps"), ([2, 2, 2], "jumps"),
                                      ([1, 2, 3, 4], "outside"), ([0, 0, 0, 0, 0, 0, 0, 1, 0], None),
                                      ([1, 2, 3], None), ([1, 1, 3], "jumps")])
def test_path_problem(path, msg):
    problem = path_problem(path)
    if msg is None:
        assert problem is None
    else:
        assert msg in problem


def test_path_ending_below_the_finest_level_reaches_it():
    cfg = tiny("upsample", layers=3)
    net = GridPathNet(cfg, [1, 1, 0], [(0, 0, "conv_3x3"), (0, 1, "conv_3x3"),
                                      (1, 0, "conv_3x3"), (1, 2, "conv_3x3")])
    assert sorted(net.head.reduce) == ["0", "1", "2"]
    assert net(torch.randn(1, 6, 4, 4)).shape == (1, cfg.out_channels, 32, 32)


def test_large_op_set_space_runs_and_reaches_every_alpha():
    cfg = tiny("prior", op_set="large")
    space = GridSearchSpace(cfg)
    space(torch.randn(2, 3, 12, 12)).mean().backward()
    assert space.alphas.shape == (num_edges(2), 8)
    assert torch.all(space.alphas.grad != 0)


def test_default_upsample_space_sizes_match_the_authors():
    with torch.device("meta"):
        space = GridSearchSpace(SpaceConfig("upsample", 64, 64))
    assert space.cfg.level_channels() == [192, 96, 48, 24]
    assert sum(p.numel() for p in space.arch_parameters()) == 108   # 9 edges x 4 ops + 6x4x3 betas
    assert len(space.cells) == 2 + 3 + 4 * 4
