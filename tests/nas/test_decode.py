import pytest
import torch

from frsengine.models import build_supernet
from frsengine.nas.decode import decode, decode_cell, decode_path, decode_space
from frsengine.nas.grid import GridSearchSpace
from frsengine.nas.space import SpaceConfig

# rows = edges (block 0: inputs 0,1; block 1: inputs 0,1,2); columns = skip, conv3, conv5, conv7
HAND_ALPHAS = torch.tensor([
    [5.0, 0.0, 0.0, 0.0],   # b0 <- H_{l-2}: skip
    [0.0, 3.0, 0.0, 0.0],   # b0 <- H_{l-1}: conv3
    [0.0, 0.0, 0.0, 1.0],   # b1 <- H_{l-2}: conv7, strength e/(3+e) = 0.475
    [4.0, 2.0, 0.0, 0.0],   # b1 <- H_{l-1}: skip 0.853; best non-skip conv3 0.115
    [0.0, 0.0, 2.0, 0.0],   # b1 <- b0: conv5 0.711
])


def test_decode_cell_darts_rule_hand_computed():
    assert decode_cell(HAND_ALPHAS, "default", 2) == (
        (0, 0, "skip_connect"), (0, 1, "conv_3x3"), (1, 1, "skip_connect"), (1, 2, "conv_5x5"))


def test_decode_cell_authors_non_skip_ranking_hand_computed():
    assert decode_cell(HAND_ALPHAS, "default", 2, ranking="strongest_non_skip") == (
        (0, 0, "skip_connect"), (0, 1, "conv_3x3"), (1, 0, "conv_7x7"), (1, 2, "conv_5x5"))


def test_decode_cell_never_picks_the_zero_op():
    alphas = torch.zeros(2, 8)
    alphas[:, 0] = 10.0   # 'none' dominates
    alphas[0, 4] = 1.0    # sep_conv_3x3
    edges = decode_cell(alphas, "large", 1)
    assert edges == ((0, 0, "sep_conv_3x3"), (0, 1, "max_pool_3x3"))


def hand_betas():
    w = torch.zeros(3, 4, 3)
    w[0, 0, 1:] = torch.tensor([0.3, 0.7])
    w[1, 0, 1:] = torch.tensor([0.9, 0.1])
    w[1, 1] = torch.tensor([0.2, 0.3, 0.5])
    w[2, 0, 1:] = torch.tensor([0.5, 0.5])
    w[2, 1] = torch.tensor([0.1, 0.1, 0.8])
    w[2, 2] = torch.tensor([0.4, 0.3, 0.3])
    return w


def test_decode_path_viterbi_hand_computed_beats_greedy():
    # best path probability: 0.7 * 0.3 * 0.8 = 0.168 (greedy 1 -> 2 -> 1 gives 0.7*0.5*0.4 = 0.14)
    assert decode_path(hand_betas()) == (1, 1, 2)


@pytest.mark.parametrize("kind,path", [("upsample", (1, 2, 3, 3)), ("prior", (0, 1, 1, 0)),
                                       ("fusion", (1, 1, 2, 1))])
def test_decode_space_recovers_a_preferred_path_in_each_orientation(kind, path):
    cfg = SpaceConfig(kind, 4, 8, layers=4, steps=2, block_multiplier=2)
    space = GridSearchSpace(cfg)
    with torch.no_grad():
        space.betas.zero_()
        prev = 0
        for layer, k in enumerate(path):
            space.betas[layer, prev, k - prev + 1] = 10.0
            prev = k
        space.alphas.copy_(HAND_ALPHAS)
    g = decode_space(space)
    assert g.path == path and g.kind == kind
    assert g.cell == decode_cell(HAND_ALPHAS, "default", 2)


def test_decode_model_covers_every_space():
    model = build_supernet("mfpsnet", "tiny")
    g = decode(model, meta={"note": "test"})
    assert g.network == "mfpsnet"
    assert list(g.spaces) == ["upsample", "parsing", "heatmap", "dictionary", "fusion"]
    assert g.meta["note"] == "test" and g.meta["edge_ranking"] == "strongest"
    assert all(len(sp.path) == 3 and len(sp.cell) == 4 for sp in g.spaces.values())
