"""Two gloo ranks (torchrun) vs one process on the same global batch.

Each rank takes its contiguous share of every global batch, so one process that splits its batch
into the same micro-batches (gradients accumulated) computes the same averaged gradients; BatchNorm
statistics are per micro-batch / per rank in both. Weights then agree to float rounding."""
import os
import subprocess
import sys

import pytest
import torch

from tests.train.helpers import REPO, SEARCH_TINY, model_tensors, run_cli, tiny_overrides


@pytest.mark.slow
@pytest.mark.parametrize("fused", ["auto", "checkpoint"])
def test_two_gloo_ranks_match_one_process_on_the_same_global_batch(faces, tmp_path, fused):
    common = ["search", "--config", str(SEARCH_TINY), f"model.fused={fused}"]
    # 12 faces: D_A 6 / D_B 6; global batch 2 faces -> 3 steps an epoch, arch steps in epoch 1.
    single = run_cli([*common, *tiny_overrides(faces, tmp_path / "one", **{"schedule.micro_batches": "2"})])
    assert single.returncode == 0, single.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", "29517", "-m", "frsengine.cli", *common,
                          *tiny_overrides(faces, tmp_path / "two", **{"schedule.batch_size": "1"})],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("search done") == 1  # rank 0 alone reports and writes

    a, b = model_tensors(tmp_path / "one"), model_tensors(tmp_path / "two")
    params = [k for k in a if "running_" not in k and "num_batches" not in k]
    assert any(k.endswith("alphas") for k in params)
    for k in params:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    # the architecture was actually learned (moved away from its initialisation) on both sides
    from frsengine.models import build_supernet
    torch.manual_seed(0)
    init = build_supernet("frsnet", "tiny").upsample_space.alphas.detach()
    assert (a["upsample_space.alphas"] - init).abs().max() > 1e-5
