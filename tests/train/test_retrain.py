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
