"""A run killed at any moment and resumed reaches the same weights as an uninterrupted one (CPU, bit-exact).

Only the run that is killed is a child process; the others run in this process (one thread, as the
child), which saves an interpreter start-up each."""
import signal
import subprocess
import sys
import time

import torch

from tests.train.helpers import REPO, SEARCH_TINY, TRAIN_TINY, model_tensors, run_main, tiny_overrides


def _start(args):
    import os
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "frsengine.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, proc, timeout=1800):
    t = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t < timeout
        time.sleep(0.02)


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_search_killed_and_resumed_equals_uninterrupted(faces, tmp_path, capsys):
    common = ["--config", str(SEARCH_TINY)]
    epochs = {"schedule.epochs": "3", "threads": "1"}  # 9 steps (arch steps from epoch 1), checkpoints every 2
    code, _, err = run_main(["search", *common, *tiny_overrides(faces, tmp_path / "full", **epochs)], capsys)
    assert code == 0, err

    killed = tmp_path / "killed"
    proc = _start(["search", *common, *tiny_overrides(faces, killed, **epochs)])
    _wait_for(killed / "checkpoints" / "last.safetensors", proc)
    proc.send_signal(signal.SIGKILL)  # no chance to save: resume from the last periodic checkpoint
    proc.communicate()
    from frsengine.train.checkpoint import load_checkpoint
    assert load_checkpoint(killed / "checkpoints" / "last.safetensors").position["step"] < 9

    code, _, err = run_main(["search", *common, *tiny_overrides(faces, killed, **epochs)], capsys)
    assert code == 2 and "already holds a run: resume it with --resume" in err

    code, _, err = run_main(["search", "--resume", str(killed), *common, *tiny_overrides(faces, killed, **epochs)],
                            capsys)
    assert code == 0, err
    _same(model_tensors(tmp_path / "full"), model_tensors(killed))
    assert (killed / "genotype.json").read_text().split('"meta"')[0] == \
        (tmp_path / "full" / "genotype.json").read_text().split('"meta"')[0]


def test_retrain_stopped_by_sigterm_and_resumed_equals_uninterrupted(faces, tmp_path, capsys):
    common = ["--config", str(TRAIN_TINY), "--genotype", str(REPO / "configs/genotypes/frsnet-seed0.json")]
    extra = {"schedule.epochs": "2", "val.list": "null", "threads": "1"}  # 12 steps
    code, _, err = run_main(["train", *common, *tiny_overrides(faces, tmp_path / "full", **extra)], capsys)
    assert code == 0, err

    stopped = tmp_path / "stopped"
    proc = _start(["train", *common, *tiny_overrides(faces, stopped, **extra)])
    _wait_for(stopped / "checkpoints" / "last.safetensors", proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in out and f"resume with --resume {stopped}" in out

    code, _, err = run_main(["train", "--resume", str(stopped)], capsys)  # the checkpoint's own config
    assert code == 0, err
    _same(model_tensors(tmp_path / "full"), model_tensors(stopped))
