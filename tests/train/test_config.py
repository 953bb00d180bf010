import pytest

from frsengine.train.config import ConfigError, load_config, parse_overrides

from tests.train.helpers import REPO, SEARCH_TINY, TRAIN_TINY


def test_defaults_follow_the_paper_and_the_authors():
    s = load_config(None, kind="search")
    assert (s.optim.name, s.optim.lr, s.optim.lr_min, s.optim.momentum) == ("sgd", 0.025, 0.001, 0.9)
    assert (s.arch.lr, s.arch.weight_decay, s.arch.start_epoch) == (1e-4, 1e-3, 10)
    assert (s.schedule.batch_size, s.schedule.epochs, s.loss.perceptual) == (4, 50, 0.001)
    t = load_config(None, ["model.genotype=g.json"], kind="train")
    assert (t.optim.name, t.optim.lr, t.optim.weight_decay) == ("adam", 1e-3, 1e-3)
    assert t.schedule.prior_start_epoch == 50


def test_files_and_overrides():
    cfg = load_config(SEARCH_TINY, ["schedule.epochs=3", "data.limit=null", "arch.betas=[0.9, 0.99]"])
    assert cfg.schedule.epochs == 3 and cfg.data.limit is None and cfg.arch.betas == (0.9, 0.99)
    assert cfg.model.preset == "tiny"
    assert load_config(TRAIN_TINY, kind="train").optim.name == "adam"
    assert parse_overrides(["a.b.c=1", "x=hello"]) == {"a": {"b": {"c": 1}}, "x": "hello"}


@pytest.mark.parametrize("items, match", [
    (["optim.lrr=0.1"], r"unknown key 'optim.lrr' .*known in optim: name, lr"),
    (["opt.lr=0.1"], r"unknown key 'opt'"),
    (["schedule.epochs=two"], r"'schedule.epochs' in overrides: expected int"),
    (["model.network=resnet"], r"must be one of frsnet, mfpsnet"),
    (["optim=3"], r"must be a section"),
    (["schedule.batch_size=4", "schedule.micro_batches=3"], r"micro_batches .* must divide"),
    (["data.arch_fraction=1.5"], r"arch_fraction must be in"),
    (["epochs"], r"is not KEY=VALUE"),
    (["configs/search/frsnet.yaml"], r"is not KEY=VALUE .* a config file goes after --config"),
])
def test_bad_values_are_named(items, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, items, kind="search")


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="this is a 'search' config"):
        load_config(SEARCH_TINY, kind="train")
    with pytest.raises(ConfigError, match="needs model.genotype"):
        load_config(None, kind="train")
    with pytest.raises(ConfigError, match="MFPSNet needs its prior network"):
        load_config(None, ["model.network=mfpsnet"], kind="search")


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.kind == path.parent.name


def test_cuda_graph_is_a_search_setting():
    assert load_config(None, ["schedule.cuda_graph=true"], kind="search").schedule.cuda_graph
    with pytest.raises(ConfigError, match="schedule.cuda_graph is for search runs"):
        load_config(None, ["schedule.cuda_graph=true", "model.genotype=g.json"], kind="train")
