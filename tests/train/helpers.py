"""Helpers for the tiny search / retrain runs (synthetic faces, 32 px, tiny presets)."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
SEARCH_TINY = REPO / "configs" / "search" / "frsnet-tiny.yaml"
TRAIN_TINY = REPO / "configs" / "train" / "frsnet-tiny.yaml"


def make_faces(folder: Path, n: int, size: int = 48, seed: int = 0, prefix: str = "f") -> Path:
    """n smooth random colour images (upsampled noise), PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = cv2.resize(rng.random((6, 6, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"{prefix}{i:02d}.png"), (np.clip(img, 0, 1) * 255).astype(np.uint8))
    return folder


def tiny_overrides(faces: Path, out: Path, **extra) -> list[str]:
    items = {"data.root": str(faces), "data.list": "null", "data.limit": "null", "data.size": "32",
             "output.dir": str(out), "output.progress": "false", "output.tensorboard": "false",
             "output.checkpoint_every": "2", "output.image_every": "0"}
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    """`frsengine ARGS` in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    from frsengine.cli import main

    capsys.readouterr()
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli(args: list[str], timeout: int = 1800, **popen) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "frsengine.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, **popen)


def model_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    from frsengine.train.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "checkpoints" / "last.safetensors").model_state()
