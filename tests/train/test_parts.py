"""Loss, checkpoint files and the sharded epoch order, one at a time."""
import logging

import pytest
import torch
from safetensors.torch import save_file

from frsengine.data.folder import EpochBatches
from frsengine.errors import FrsError
from frsengine.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from frsengine.train.config import LossConfig
from frsengine.train.losses import VGG19_LAYERS, RestorationLoss, VGG19Features, load_vgg19


def test_epoch_batches_shard_each_global_batch_across_ranks():
    one = EpochBatches(22, 4, seed=3, drop_last=True)
    one.epoch = 2
    ranks = [EpochBatches(22, 2, seed=3, rank=r, world_size=2) for r in range(2)]
    for r in ranks:
        r.epoch = 2
    singles = list(one)
    shards = [list(r) for r in ranks]
    assert len(singles) == len(shards[0]) == len(shards[1]) == 5
    for b, (s0, s1) in enumerate(zip(*shards)):
        assert singles[b] == s0 + s1
    one.start = 3  # resuming mid-epoch skips whole batches without loading them
    assert list(one) == singles[3:]
    other = EpochBatches(22, 4, seed=3, drop_last=True)
    other.epoch = 3
    assert list(other) != singles


def test_vgg19_layer_names_follow_torchvision_numbering(tmp_path):
    assert VGG19_LAYERS.index("conv5_4") == 34 and VGG19_LAYERS.index("relu1_1") == 1
    net = VGG19Features("conv2_1")
    state = {f"features.{k}": torch.randn_like(v) for k, v in net.features.state_dict().items()}
    save_file(state, str(tmp_path / "vgg.safetensors"))
    loaded = load_vgg19(tmp_path / "vgg.safetensors", "conv2_1")
    assert torch.equal(loaded.features[5].weight, state["features.5.weight"])
    assert loaded(torch.rand(1, 3, 16, 16)).shape == (1, 128, 8, 8)
    del state["features.2.weight"]
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(FrsError, match="lacks 1 VGG-19 tensors"):
        load_vgg19(tmp_path / "bad.safetensors", "conv2_1")


def test_loss_is_eq9_summed_over_passes(tmp_path, caplog):
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    with caplog.at_level(logging.WARNING, "frsengine.train"):
        plain = RestorationLoss.from_config(LossConfig(perceptual=0.001))
    assert "perceptual loss is off" in caplog.text and plain.vgg is None
    assert torch.allclose(plain((x, y), y), (x - y).abs().mean())
    net = VGG19Features("conv1_2")
    with_vgg = RestorationLoss(1.0, 0.5, net)
    want = (x - y).abs().mean() + 0.5 * (net(x) - net(y)).abs().mean()
    assert torch.allclose(with_vgg(x, y), want)


def test_checkpoint_round_trip_and_damage(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    opts = {"sgd": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
            "adam": torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))}
    for opt in opts.values():
        model(torch.rand(2, 3, 8, 8)).sum().backward()
        opt.step()
    path = save_checkpoint(tmp_path / "c.safetensors", model, opts, {"epoch": 1, "step": 5}, {"kind": "search"})
    ck = load_checkpoint(path)
    twin = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    twin_opts = {"sgd": torch.optim.SGD(twin.parameters(), lr=0.5, momentum=0.9),
                 "adam": torch.optim.Adam(twin.parameters(), lr=1e-2)}
    ck.restore_model(twin)
    for name, opt in twin_opts.items():
        ck.restore_optimizer(name, opt)
        ref, got = opts[name].state_dict(), opt.state_dict()
        assert got["param_groups"][0]["lr"] == ref["param_groups"][0]["lr"]
        for i, st in ref["state"].items():
            for k, v in st.items():
                assert torch.equal(got["state"][i][k], v) if torch.is_tensor(v) else got["state"][i][k] == v
    for a, b in zip(model.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        ck.restore_model(torch.nn.Conv2d(3, 4, 3))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), metadata={"format": "x"})
    with pytest.raises(CheckpointError, match="not a frsengine training checkpoint"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_set_deterministic_sets_the_torch_flags_without_loading_inductor():
    import subprocess
    import sys
    code = ("import sys, torch\n"
            "from frsengine.train.run import set_deterministic\n"
            "set_deterministic(True, warn_only=True)\n"
            "assert torch.are_deterministic_algorithms_enabled()\n"
            "assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
            "set_deterministic(False)\n"
            "assert not torch.are_deterministic_algorithms_enabled()\n"
            "print('inductor' if 'torch._inductor' in sys.modules else 'no inductor')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "no inductor"
