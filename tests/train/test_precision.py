"""model.precision: bf16 runs the forward passes and losses of both search steps and of retraining
(and retrain validation) under CPU/CUDA autocast; fp32 runs none of it under autocast."""
import importlib
import math

import pytest
import torch
import torch.nn as nn

from frsengine.train import load_config, retrain, search
from frsengine.train import precision as precision_mod
from frsengine.train.config import ConfigError
from tests.train.helpers import REPO, SEARCH_TINY, TRAIN_TINY, tiny_overrides

# One step; the search runs its default (fused) path, whose mixed ops follow autocast
# (tests/ops/test_mixed_precision.py checks their numerics).
ONE_STEP = {"schedule.max_steps": "1", "output.checkpoint_every": "1"}


def _record_conv_first(monkeypatch, module, builder):
    """(``module``: the submodule; ``frsengine.train.search`` the attribute is the function.)
    Patch ``module.builder`` so the built model's first plain Conv2d records, at each forward,
    (autocast on for the CPU, grad mode, output dtype)."""
    calls = []
    build = getattr(module, builder)

    def hook(conv, inputs, out):
        calls.append((torch.is_autocast_enabled("cpu"), torch.is_grad_enabled(), out.dtype))

    def patched(*args, **kwargs):
        model = build(*args, **kwargs)
        assert type(model.conv_first) is nn.Conv2d
        model.conv_first.register_forward_hook(hook)
        return model

    monkeypatch.setattr(module, builder, patched)
    return calls


def test_bare_off_reads_as_the_off_choice():
    """YAML 1.1 reads `off` as false; a key whose choices include 'off' takes it as 'off'."""
    assert load_config(None, ["model.fused=off"], kind="search").model.fused == "off"


def test_precision_key_is_checked():
    assert load_config(None, kind="search").model.precision == "fp32"
    assert load_config(None, ["model.precision=bf16"], kind="search").model.precision == "bf16"
    with pytest.raises(ConfigError, match=r"'model.precision' in overrides must be one of fp32, bf16, got 'fp16'"):
        load_config(None, ["model.precision=fp16"], kind="search")


def test_bf16_is_refused_on_a_gpu_without_it_and_warned_on_a_cpu_without_it(monkeypatch):
    assert precision_mod.check_precision("fp32", torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")
    with pytest.raises(ConfigError, match="needs a GPU with bfloat16 support, and Old GPU has none"):
        precision_mod.check_precision("bf16", torch.device("cuda", 0))
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert "slower than fp32" in precision_mod.check_precision("bf16", torch.device("cpu"))


@pytest.mark.parametrize("precision,arch_precision", [("bf16", "model"), ("bf16", "fp32"), ("fp32", "model"),
                                                      ("fp32", "bf16")])
def test_search_steps_run_under_autocast_with_bf16(precision, arch_precision, faces, tmp_path, monkeypatch):
    calls = _record_conv_first(monkeypatch, importlib.import_module("frsengine.train.search"), "build_supernet")
    monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda: False)  # the slow-CPU warning, once
    # arch.start_epoch 0: the one step is a weight step and an architecture step.
    cfg = load_config(SEARCH_TINY, tiny_overrides(faces, tmp_path / "run", **ONE_STEP, **{
        "model.precision": precision, "arch.precision": arch_precision, "arch.start_epoch": "0"}))
    summary = search(cfg)
    assert summary["status"] == "done" and summary["steps"] == 1
    assert math.isfinite(summary["loss_weights"]) and math.isfinite(summary["loss_arch"])
    bf16 = precision == "bf16"
    arch_bf16 = arch_precision == "bf16" or (arch_precision == "model" and bf16)
    assert calls == [(bf16, True, torch.bfloat16 if bf16 else torch.float32),                  # weight step
                     (arch_bf16, True, torch.bfloat16 if arch_bf16 else torch.float32)]        # arch step
    assert (tmp_path / "run" / "run.log").read_text().count("bf16 is emulated") == int(bf16 or arch_bf16)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_retrain_step_and_validation_run_under_autocast_with_bf16(precision, faces, tmp_path, monkeypatch):
    calls = _record_conv_first(monkeypatch, importlib.import_module("frsengine.train.retrain"), "build_derived")
    (tmp_path / "val.txt").write_text("f00.png\nf01.png\n")
    cfg = load_config(TRAIN_TINY, tiny_overrides(faces, tmp_path / "run", **ONE_STEP, **{
        "model.precision": precision, "model.genotype": str(REPO / "configs/genotypes/frsnet-seed0.json"),
        "val.list": str(tmp_path / "val.txt"), "data.disentangle": "false"}), kind="train")
    summary = retrain(cfg)
    assert summary["status"] == "done" and summary["steps"] == 1 and math.isfinite(summary["loss"])
    assert 10 < summary["val"]["psnr"] < 60 and 0 < summary["val"]["ssim"] <= 1  # scored in fp32
    bf16 = precision == "bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    assert calls == [(bf16, True, dtype), (bf16, False, dtype)]  # the training step, then validation
