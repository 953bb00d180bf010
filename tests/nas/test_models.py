import pytest
import torch

from frsengine.models import PRESETS, build_derived, build_supernet, get_config
from frsengine.models.frsnet import FRSNet
from frsengine.nas.decode import decode
from frsengine.nas.genotype import GenotypeError, genotype_from_dict
from frsengine.nas.grid import GridPathNet


def priors_for(model, n, size):
    return {p.name: torch.rand(n, p.channels, size, size) for p in model.cfg.priors}


@pytest.mark.parametrize("size", [32, 48])
def test_frsnet_supernet_shapes_and_split(size):
    model = build_supernet("frsnet", "tiny")
    y = model(torch.rand(2, 3, size, size))
    assert y.shape == (2, 3, size, size)
    arch, weights = model.arch_parameters(), model.weight_parameters()
    assert len(arch) == 2 and {id(p) for p in arch}.isdisjoint(id(p) for p in weights)
    assert len(arch) + len(weights) == len(list(model.parameters()))


def test_mfpsnet_supernet_two_passes_gradients_everywhere():
    model = build_supernet("mfpsnet", "tiny")
    x = torch.rand(2, 3, 32, 32)
    outs = model(x, priors=priors_for(model, 2, 32))
    assert len(outs) == 2 and all(o.shape == x.shape for o in outs)
    sum(o.square().mean() for o in outs).backward()
    assert len(model.arch_parameters()) == 2 * 5
    for name, p in model.named_parameters():
        if name.endswith("betas"):
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_mfpsnet_prior_fn_runs_on_the_pass1_output():
    model = build_supernet("mfpsnet", "tiny")
    seen = []

    def prior_fn(img):
        seen.append(img)
        return {p.name: img.mean(1, keepdim=True).expand(-1, p.channels, -1, -1) for p in model.cfg.priors}

    out1, out2 = model(torch.rand(1, 3, 16, 16), prior_fn=prior_fn)
    assert len(seen) == 1 and seen[0] is out1


def test_mfpsnet_missing_prior_is_a_clear_error():
    model = build_supernet("mfpsnet", "tiny")
    with pytest.raises(ValueError, match="missing prior"):
        model(torch.rand(1, 3, 16, 16), priors={"parsing": torch.rand(1, 5, 16, 16)})


def test_bad_input_size_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible by 8"):
        build_supernet("frsnet", "tiny")(torch.rand(1, 3, 20, 20))


@pytest.mark.parametrize("network", ["frsnet", "mfpsnet"])
def test_derived_net_from_decoded_genotype_trains(network):
    supernet = build_supernet(network, "tiny")
    g = decode(supernet)
    g = genotype_from_dict(g.to_dict())   # through JSON form
    net = build_derived(g, "tiny")
    assert not any(n.endswith(("alphas", "betas")) for n, _ in net.named_parameters())
    x = torch.rand(2, 3, 32, 32)
    kw = {"priors": priors_for(net, 2, 32)} if network == "mfpsnet" else {}
    out = net(x, **kw)
    out = out[-1] if isinstance(out, tuple) else out
    assert out.shape == x.shape
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())
    opt.step()
    # only the chosen ops exist: every derived cell has the genotype's edges (minus dropped H_{l-2})
    for name, space in net.search_spaces().items():
        assert isinstance(space, GridPathNet)
        assert space.path == list(g.spaces[name].path)
        for cell in space.cells:
            want = [e for e in g.spaces[name].cell if e[1] != 0 or cell.has_prev_prev]
            assert [tuple(e) for e in cell.edge_list] == want


def test_derived_net_has_far_fewer_parameters_than_the_supernet():
    supernet = build_supernet("frsnet", "tiny")
    net = build_derived(decode(supernet), "tiny")
    n_super = sum(p.numel() for p in supernet.weight_parameters())
    n_derived = sum(p.numel() for p in net.parameters())
    assert n_derived < n_super / 2


def test_genotype_for_the_wrong_network_is_rejected():
    g = decode(build_supernet("mfpsnet", "tiny"))
    with pytest.raises(GenotypeError, match="not frsnet"):
        FRSNet(g, get_config("frsnet", "tiny"))


def test_derived_sizes_come_from_the_genotype():
    g = decode(build_supernet("frsnet", "tiny"))
    net = build_derived(g, "small")   # small channels, tiny genotype (3 layers, 2 blocks)
    assert net.upsample_space.cfg.layers == 3 and net.upsample_space.cfg.steps == 2
    assert net(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_output_modes():
    x = torch.rand(1, 3, 16, 16)
    res = build_supernet("frsnet", "tiny")
    direct = build_supernet("frsnet", "tiny", output="direct")
    direct.load_state_dict(res.state_dict())
    res.eval(), direct.eval()
    with torch.no_grad():
        torch.testing.assert_close(res(x), x - direct(x))


def test_genotype_that_does_not_fit_the_sizes_is_a_genotype_error():
    g = decode(build_supernet("frsnet", "tiny"))
    d = g.to_dict()
    d["spaces"]["upsample"]["levels"] = 5
    with pytest.raises(GenotypeError, match="does not fit"):
        build_derived(genotype_from_dict(d), "tiny")


def _expected_arch_entries(space_cfg):
    edges = sum(2 + i for i in range(space_cfg.steps))
    return edges * 4 + space_cfg.layers * space_cfg.levels * 3


@pytest.mark.parametrize("network,preset", [(n, p) for n, ps in PRESETS.items() for p in ps])
def test_every_preset_builds_with_a_complete_parameter_split(network, preset):
    with torch.device("meta"):
        model = build_supernet(network, preset)
    cfg = model.cfg
    spaces = [cfg.upsample] + ([cfg.prior] * len(cfg.priors) + [cfg.fusion] if network == "mfpsnet" else [])
    assert sum(p.numel() for p in model.arch_parameters()) == sum(_expected_arch_entries(s) for s in spaces)
    assert len(model.arch_parameters()) + len(model.weight_parameters()) == len(list(model.parameters()))
    if preset == "default":
        assert (cfg.upsample.layers, cfg.upsample.steps, cfg.upsample.block_multiplier) == (6, 3, 3)
        if network == "mfpsnet":
            assert cfg.prior.layers == 6 and cfg.fusion.layers == 8 and cfg.passes == 2
