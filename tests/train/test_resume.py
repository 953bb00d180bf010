"""A run killed at any moment and resumed reaches the same weights as an uninterrupted one (CPU, bit-exact)."""
import signal
import subprocess
import sys
import time

import torch

from tests.train.helpers import REPO, SEARCH_TINY, TRAIN_TINY, model_tensors, run_cli, tiny_overrides


def _start(args):
    import os
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "frsengine.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=180):
    t = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t < timeout
        time.sleep(0.02)


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_search_killed_and_resumed_equals_uninterrupted(faces, tmp_path):
    common = ["--config", str(SEARCH_TINY)]
    epochs = {"schedule.epochs": "5"}  # 15 steps, checkpoints every 2
    full = run_cli(["search", *common, *tiny_overrides(faces, tmp_path / "full", **epochs)])
    assert full.returncode == 0, full.stderr

    killed = tmp_path / "killed"
    proc = _start(["search", *common, *tiny_overrides(faces, killed, **epochs)])
    _wait_for(killed / "checkpoints" / "last.safetensors", proc)
    proc.send_signal(signal.SIGKILL)  # no chance to save: resume from the last periodic checkpoint
    proc.communicate()
    from frsengine.train.checkpoint import load_checkpoint
    assert load_checkpoint(killed / "checkpoints" / "last.safetensors").position["step"] < 15

    again = run_cli(["search", *common, *tiny_overrides(faces, killed, **epochs)])
    assert again.returncode == 2 and "already holds a run: resume it with --resume" in again.stderr

    resumed = run_cli(["search", "--resume", str(killed), *common, *tiny_overrides(faces, killed, **epochs)])
    assert resumed.returncode == 0, resumed.stderr
    _same(model_tensors(tmp_path / "full"), model_tensors(killed))
    assert (killed / "genotype.json").read_text().split('"meta"')[0] == \
        (tmp_path / "full" / "genotype.json").read_text().split('"meta"')[0]


def test_retrain_stopped_by_sigterm_and_resumed_equals_uninterrupted(faces, tmp_path):
    common = ["--config", str(TRAIN_TINY), "--genotype", str(REPO / "configs/genotypes/frsnet-seed0.json")]
    extra = {"schedule.epochs": "3", "val.list": "null"}  # 18 steps
    full = run_cli(["train", *common, *tiny_overrides(faces, tmp_path / "full", **extra)])
    assert full.returncode == 0, full.stderr

    stopped = tmp_path / "stopped"
    proc = _start(["train", *common, *tiny_overrides(faces, stopped, **extra)])
    _wait_for(stopped / "checkpoints" / "last.safetensors", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in out and f"resume with --resume {stopped}" in out

    resumed = run_cli(["train", "--resume", str(stopped)])  # the checkpoint's own config
    assert resumed.returncode == 0, resumed.stderr
    _same(model_tensors(tmp_path / "full"), model_tensors(stopped))
