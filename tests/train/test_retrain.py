import json

import pytest
import torch

from frsengine.export import load_package
from frsengine.train import load_config, retrain
from tests.train.helpers import REPO, TRAIN_TINY, make_faces, tiny_overrides


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain")
    folder = make_faces(root / "faces", 8)
    make_faces(folder, 4, seed=1, prefix="v")
    (root / "train.txt").write_text("\n".join(f"f{i:02d}.png" for i in range(8)))
    (root / "val.txt").write_text("\n".join(f"v{i:02d}.png" for i in range(4)))
    cfg = load_config(TRAIN_TINY, tiny_overrides(folder, root / "run", **{
        "model.genotype": str(REPO / "configs/genotypes/frsnet-seed0.json"), "data.list": str(root / "train.txt"),
        "val.list": str(root / "val.txt"), "schedule.epochs": "2", "data.disentangle": "false"}), kind="train")
    return root / "run", retrain(cfg)


def test_retrain_validates_each_epoch_against_the_lq_baseline(trained):
    run_dir, summary = trained
    assert summary["status"] == "done" and summary["epochs"] == 2 and summary["steps"] == 8
    hist = json.loads((run_dir / "val_history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    for h in hist:
        assert 10 < h["psnr"] < 60 and 0 < h["ssim"] <= 1
        assert h["lq"] == summary["val_lq"] and 10 < h["lq"]["psnr"] < 60
    assert summary["best_psnr"] == max(h["psnr"] for h in hist)


def test_retrain_keeps_best_and_last_and_exports_the_best_as_a_package(trained):
    run_dir, summary = trained
    assert (run_dir / "checkpoints" / "best.safetensors").exists()
    assert (run_dir / "checkpoints" / "last.safetensors").exists()
    pkg = load_package(run_dir / "model")
    assert pkg.network == "frsnet" and pkg.preset == "tiny"
    model = pkg.build(fold=False).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def _random_priors(folder):
    """A random student and a 2-atom dictionary: priors of the default sizes (10 / 68 / 64 channels)."""
    from frsengine.priors.dictionary import DictionaryConfig, build_dictionary, save_dictionary
    from frsengine.priors.student import StudentConfig, StudentPriorNet
    from frsengine.priors.train import save_checkpoint

    torch.manual_seed(0)
    student = save_checkpoint(folder / "student.safetensors", StudentPriorNet(StudentConfig(widths=(8, 8, 8, 8))),
                              None, {})
    cfg = DictionaryConfig(atoms=2, hidden=8, kmeans_iters=2)
    boxes = torch.tensor([[40.0, 50, 20], [88, 50, 20], [64, 70, 20], [64, 95, 30]]).expand(4, 4, 3).contiguous()
    dictionary = save_dictionary(folder / "dict.safetensors", build_dictionary(torch.rand(4, 3, 128, 128), boxes, cfg), cfg)
    return student, dictionary


def test_mfpsnet_trains_without_priors_first_then_with_them(tmp_path):
    from frsengine.models import build_derived
    from frsengine.nas.genotype import load_genotype
    from frsengine.train.checkpoint import load_checkpoint

    student, dictionary = _random_priors(tmp_path)
    folder = make_faces(tmp_path / "faces", 4)
    genotype = REPO / "configs/genotypes/mfpsnet-seed0.json"
    cfg = load_config(TRAIN_TINY, tiny_overrides(folder, tmp_path / "run", **{
        "model.genotype": str(genotype), "model.network": "mfpsnet", "model.preset": "small",
        "model.prior_student": str(student), "model.prior_dictionary": str(dictionary),
        "schedule.prior_start_epoch": "1", "schedule.epochs": "2", "data.size": "64", "data.disentangle": "false",
        "val.list": "null", "output.keep": "4"}), kind="train")
    summary = retrain(cfg)
    assert summary["status"] == "done" and summary["steps"] == 4
    torch.manual_seed(0)
    init = build_derived(load_genotype(genotype), "small").state_dict()
    ckpts = tmp_path / "run" / "checkpoints"
    epoch1, epoch2 = (load_checkpoint(ckpts / f"step-{s:07d}.safetensors").model_state() for s in (2, 4))
    fusion = [k for k in init if k.startswith("fusion_space.") and k.endswith("weight")]
    assert fusion
    # epoch 1: one pass without priors, so the fusion module gets no gradient; epoch 2 trains it
    assert all(torch.equal(epoch1[k], init[k]) for k in fusion)
    assert any(not torch.equal(epoch2[k], init[k]) for k in fusion)
    assert not torch.equal(epoch1["conv_first.weight"], init["conv_first.weight"])
