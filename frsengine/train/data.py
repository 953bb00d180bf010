"""Training data for search and retrain: the face set of a config, its D_A / D_B split, sharded
loaders, the batch layout of degradation disentanglement and the fixed validation set."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from frsengine.data import DegradedLoader, FaceFolder
from frsengine.degrade import DegradedBatch, Degrader
from frsengine.errors import FrsError
from frsengine.train.config import DataConfig, ValConfig
from frsengine.train.distributed import DistInfo


def faces(cfg: DataConfig, list_file: str | None = None, limit: int | None = None, seed: int = 0) -> FaceFolder:
    """The faces of ``cfg.root`` (or those ``list_file`` names), at most ``limit`` of them picked by a
    seeded shuffle (kept in list order)."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise FrsError(f"data folder '{root}' does not exist: set data.root to a folder of face images")
    ds = FaceFolder(root, cfg.size, list_file)
    if limit is not None and limit < len(ds.paths):
        keep = np.sort(np.random.default_rng([seed, 7]).permutation(len(ds.paths))[:limit])
        ds.paths = [ds.paths[i] for i in keep]
    return ds


def split(ds: FaceFolder, arch_fraction: float, seed: int) -> tuple[Subset, Subset]:
    """D_A (weights) and D_B (architecture): a seeded split of the faces (Algorithm 1, line 2)."""
    n = len(ds)
    n_b = int(round(n * arch_fraction))
    if n_b < 1 or n - n_b < 1:
        raise FrsError(f"{n} faces cannot be split into D_A and D_B (data.arch_fraction={arch_fraction}): "
                       "give more faces")
    perm = np.random.default_rng([seed, 11]).permutation(n)
    return Subset(ds, sorted(perm[n_b:].tolist())), Subset(ds, sorted(perm[:n_b].tolist()))


def degrader(cfg: DataConfig, device: torch.device, singles: bool) -> Degrader:
    dev = device if cfg.backend == "torch" else None
    return Degrader(cfg.degradation, cfg.backend, device=dev, singles=singles, overrides=cfg.overrides or None)


def loader(dataset, cfg: DataConfig, batch_size: int, seed: int, info: DistInfo, device: torch.device) -> DegradedLoader:
    """A loader of degraded batches, this rank's share of each global batch."""
    deg = degrader(cfg, device, singles=cfg.disentangle)
    if len(dataset) < batch_size * info.world_size:
        raise FrsError(f"{len(dataset)} faces are fewer than one global batch ({batch_size} x {info.world_size} "
                       "ranks): give more faces or a smaller schedule.batch_size")
    return DegradedLoader(dataset, deg, batch_size=batch_size, seed=seed, num_workers=cfg.workers, drop_last=True,
                          device=device if cfg.backend == "torch" and device.type == "cuda" else None,
                          rank=info.rank, world_size=info.world_size)


def inputs_and_targets(batch: DegradedBatch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(LQ inputs, HQ targets). With single degradations (disentanglement, Sec. 3.1.2) the inputs are
    the full degradation then each single one of the same faces, and the targets repeat the faces."""
    hq, lq = batch.hq.to(device), batch.lq_full.to(device)
    if batch.lq_singles is None:
        return lq, hq
    singles = batch.lq_singles.to(device)
    k = singles.shape[1]
    x = torch.cat([lq] + [singles[:, i] for i in range(k)], 0)
    return x, hq.repeat(k + 1, 1, 1, 1)


@dataclass
class ValidationSet:
    hq: torch.Tensor      # (N, 3, H, W) in [0, 1]
    lq: torch.Tensor      # full degradation, fixed by (val seed, face index)
    names: list[str]


def validation_set(data: DataConfig, val: ValConfig) -> ValidationSet | None:
    """The fixed, seeded validation pairs (full degradation), or None when no val.list is set."""
    if not val.list:
        return None
    ds = faces(data, val.list, val.limit, val.seed)
    hq = torch.stack([ds[i][0] for i in range(len(ds))])
    deg = Degrader(data.degradation, "torch", singles=False, overrides=data.overrides or None)
    out = deg(hq, deg.params(val.seed, range(len(ds)), 0))
    return ValidationSet(out.hq, out.lq_full.clamp(0, 1), [p.name for p in ds.paths])
