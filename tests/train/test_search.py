import json

import pytest
import torch

from frsengine.models import build_derived
from frsengine.nas.genotype import load_genotype
from frsengine.train import load_config, search
from frsengine.train.checkpoint import load_checkpoint
from tests.train.helpers import SEARCH_TINY, tiny_overrides


@pytest.fixture(scope="module")
def searched(faces, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    # 12 faces -> D_A 6 / D_B 6, batch 2: 3 steps an epoch; alpha/beta move from epoch 1 on.
    cfg = load_config(SEARCH_TINY, tiny_overrides(faces, out, **{"output.tensorboard": "true",
                                                                "output.image_every": "3"}))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    summary = search(cfg)
    torch.set_num_threads(threads)
    return out, summary


def test_search_writes_a_valid_genotype(searched):
    out, summary = searched
    assert summary["status"] == "done" and summary["steps"] == 6 and summary["epochs"] == 2
    genotype = load_genotype(out / "genotype.json")
    assert genotype.network == "frsnet" and genotype.meta["step"] == 6
    model = build_derived(genotype, "tiny")
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert (out / "genotype.png").stat().st_size > 0 and (out / "arch_evolution.png").stat().st_size > 0
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert 0.0 <= summary["data_wait"] < 1.0 and summary["images_per_s"] > 0


def test_alpha_beta_frozen_for_the_first_epochs_then_learned(searched):
    out, _ = searched
    history = json.loads((out / "arch_history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    init = load_config(SEARCH_TINY).model  # the supernet's initial alpha: same seed, same build
    from frsengine.models import build_supernet
    torch.manual_seed(0)
    fresh = build_supernet("frsnet", init.preset).upsample_space
    a0 = torch.softmax(fresh.alphas.detach(), -1)
    after_frozen = torch.tensor(history[0]["spaces"]["upsample"]["alphas"])
    after_search = torch.tensor(history[1]["spaces"]["upsample"]["alphas"])
    assert torch.allclose(after_frozen, a0, atol=1e-7)          # epoch 0: no architecture step
    assert not torch.allclose(after_search, a0, atol=1e-6)       # epoch 1: alpha moved


def test_checkpoint_holds_everything_to_resume(searched):
    out, _ = searched
    ck = load_checkpoint(out / "checkpoints" / "last.safetensors")
    assert ck.position == {"epoch": 2, "batch": 0, "step": 6}
    assert ck.config["kind"] == "search" and ck.config["model"]["preset"] == "tiny"
    assert set(ck.optimizers) == {"weights", "arch"}
    assert any(k.startswith("optim/arch/") and k.endswith("exp_avg") for k in ck.tensors)
    assert any(k.endswith("momentum_buffer") for k in ck.tensors)
    assert "rng/torch" in ck.tensors
    # only the newest `keep` step checkpoints stay
    assert len(list((out / "checkpoints").glob("step-*.safetensors"))) == 2



def test_resume_with_other_settings_warns_in_run_log(searched, faces, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(searched[0], copy)
    cfg = load_config(SEARCH_TINY, tiny_overrides(faces, copy, **{"optim.lr": "0.05"}))
    summary = search(cfg, resume=str(copy))  # a finished run: nothing left to do but the warning
    assert summary["status"] == "done" and summary["steps"] == 6
    assert "settings that differ from the checkpoint's (optim.lr)" in (copy / "run.log").read_text()


def test_checkpoint_mode_search_gives_the_same_model(faces, tmp_path):
    """model.fused=checkpoint: bit-identical weights, alpha/beta and BN statistics after 4 steps to
    the default (keep) mode (the recompute reruns the same kernels and updates no statistics again)."""
    states = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for mode in ("keep", "checkpoint"):
            out = tmp_path / mode
            cfg = load_config(SEARCH_TINY, tiny_overrides(faces, out, **{"model.fused": mode,
                                                                        "schedule.max_steps": "4"}))
            assert search(cfg)["steps"] == 4
            states[mode] = load_checkpoint(out / "checkpoints" / "last.safetensors").model_state()
    finally:
        torch.set_num_threads(threads)
    want, got = states["keep"], states["checkpoint"]
    assert want.keys() == got.keys()
    assert [name for name in want if not torch.equal(got[name], want[name])] == []
