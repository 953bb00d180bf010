"""A dataset over a folder of face images and a loader that degrades its batches.

Bad-file policy: files are not decoded up front (22k faces would take minutes). When a file
fails to decode in `__getitem__`, its name and reason are logged once (per process) on the
`frsengine.data` logger, and the next readable file in list order (wrapping around) is
returned instead. The substitute is the same whatever the batch size or worker count, and
the returned index stays the requested one, so that the sample keeps its own degradation
parameters.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from frsengine.degrade import DegradedBatch, Degrader
from frsengine.errors import FrsError, ImageReadError
from frsengine.io.images import MIN_SIDE, list_images, read_image, to_square

log = logging.getLogger("frsengine.data")


def read_list_file(list_file: str | os.PathLike) -> list[str]:
    """Names from a list file: one relative path per line; blank lines and '#' comments skipped."""
    try:
        lines = Path(list_file).read_text().splitlines()
    except OSError as exc:
        raise FrsError(f"cannot read list file '{list_file}' ({exc.strerror}): check the path") from None
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def resolve_files(root: str | os.PathLike, list_file: str | os.PathLike | None = None,
                  recursive: bool = True) -> list[Path]:
    """The image files of `root` (sorted), or those a list file names relative to `root`
    (in the list's order; names that do not exist are dropped with one warning)."""
    root = Path(root)
    if list_file is None:
        return list_images(root, recursive)
    if not root.is_dir():
        raise FrsError(f"folder '{root}' does not exist: check the path")
    paths = [root / name for name in read_list_file(list_file)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        shown = ", ".join(p.name for p in missing[:5])
        log.warning("%d of %d files in %s are not under %s (dropped): %s%s", len(missing), len(paths),
                    list_file, root, shown, ", ..." if len(missing) > 5 else "")
        if len(missing) == len(paths):
            raise FrsError(f"none of the {len(paths)} files listed in '{list_file}' exist under "
                           f"'{root}': is the folder the one the list was made for?")
    return [p for p in paths if p.exists()]


class FaceFolder(Dataset):
    """Faces from an image folder (any size/format), centre-cropped and resized to
    size x size. Item i is `(uint8 tensor (3, size, size), i)`; see the module docstring for
    what happens on a bad file."""

    def __init__(self, root: str | os.PathLike, size: int = 128,
                 list_file: str | os.PathLike | None = None, min_side: int = MIN_SIDE):
        self.root = Path(root)
        self.size = size
        self.min_side = min_side
        self.paths = resolve_files(self.root, list_file)
        if not self.paths:
            raise FrsError(f"no image files in '{self.root}': check the folder (extensions: "
                           "png, jpg, jpeg, bmp, webp, tif, tiff, gif, ppm, pgm)")
        self._bad: set[int] = set()  # per process: each worker learns bad files on its own

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        """The size x size x 3 uint8 face of file `index`; raises ImageReadError."""
        img, _ = read_image(self.paths[index], self.min_side)
        return to_square(img, self.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        n = len(self.paths)
        for step in range(n):
            j = (index + step) % n
            if j in self._bad:
                continue
            try:
                img = self.load(j)
            except ImageReadError as exc:
                self._bad.add(j)
                log.warning("skipped %s: %s (using the next readable face instead)", exc.path, exc.reason)
                continue
            return torch.from_numpy(np.require(img, requirements='W')).permute(2, 0, 1).contiguous(), index
        raise FrsError(f"none of the {n} files in '{self.root}' could be read: see the warnings above")


def _collate_hq(samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, list[int]]:
    return torch.stack([img for img, _ in samples]), [int(i) for _, i in samples]


def runs_on_cpu(degrader: Degrader) -> bool:
    """Whether the degrader's backend computes on the CPU (then workers can run it)."""
    device = getattr(degrader.backend, "device", None)
    if degrader.backend.name == "dali":
        return device is not None and torch.device(device).type == "cpu"
    return device is None or torch.device(device).type == "cpu"


class EpochBatches(Sampler[list[int]]):
    """The batches of one epoch: a permutation drawn from (seed, epoch) alone, cut into global
    batches of ``batch_size * world_size``; rank r takes the r-th contiguous share of each, so
    ``world_size`` ranks together see exactly the batches one process with the global batch size
    sees. ``start`` skips whole batches without loading them (resuming mid-epoch). With several
    ranks an incomplete last global batch is dropped (every rank must take the same number of steps)."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise FrsError(f"rank {rank} is not in 0..{world_size - 1}")
        self.n, self.batch_size, self.seed, self.shuffle = n, int(batch_size), int(seed), shuffle
        self.drop_last = drop_last or world_size > 1
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(2, np.uint32)
        g = torch.Generator().manual_seed((int(state[0]) & 0x7FFFFFFF) << 32 | int(state[1]))
        return torch.randperm(self.n, generator=g)

    def __len__(self) -> int:
        step = self.batch_size * self.world_size
        return self.n // step if self.drop_last else -(-self.n // step)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order().tolist()
        step = self.batch_size * self.world_size
        for b in range(self.start, len(self)):
            chunk = order[b * step:(b + 1) * step]
            mine = chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size] if self.world_size > 1 else chunk
            if mine:
                yield mine


class DegradedLoader:
    """Batches of `DegradedBatch(hq, lq_full, lq_singles, params)` from a dataset of uint8
    HQ faces, each sample's parameters drawn from (seed, epoch, dataset index).

    Where the degradation runs (`degrade_in`): "main" — in the main process after the
    workers decoded the batch (what a CUDA backend needs); "workers" — each worker degrades
    the batch it decoded, so a CPU backend scales with the worker count; "auto" (default) —
    workers when there are workers and the backend works image by image (`opencv`): a
    batched backend already uses the cores through its own threads, and moving its float
    batches between processes costs more than it gains (measured on 2 cores: torch in the
    main process 386 faces/s, in 2 workers 248; opencv 247 -> 296).
    The shuffle order depends only on (seed, epoch): call `set_epoch(e)` before each epoch,
    otherwise every epoch repeats epoch 0. `rank`/`world_size` shard each global batch across
    data-parallel ranks and `set_epoch(e, start_batch=k)` resumes an epoch at batch k (see
    `EpochBatches`)."""

    def __init__(self, dataset: Dataset, degrader: Degrader, batch_size: int = 32, seed: int = 0,
                 shuffle: bool = True, num_workers: int = 0, drop_last: bool = False,
                 device: str | torch.device | None = None, degrade_in: str = "auto",
                 rank: int = 0, world_size: int = 1):
        if degrade_in not in ("auto", "main", "workers"):
            raise FrsError(f"degrade_in must be 'auto', 'main' or 'workers', got '{degrade_in}'")
        if degrade_in == "workers" and (num_workers == 0 or not runs_on_cpu(degrader)):
            raise FrsError("degrade_in='workers' needs num_workers > 0 and a degrader on the CPU")
        self.dataset = dataset
        self.degrader = degrader
        self.seed = int(seed)
        self.epoch = 0
        self.device = torch.device(device) if device is not None else None
        self.in_workers = degrade_in == "workers" or (
            degrade_in == "auto" and num_workers > 0 and degrader.backend.name == "opencv")
        self.batches = EpochBatches(len(dataset), batch_size, self.seed, shuffle, drop_last, rank, world_size)
        self.loader = DataLoader(
            dataset, batch_sampler=self.batches, num_workers=num_workers, collate_fn=self._collate,
            pin_memory=self.device is not None and self.device.type == "cuda",
        )

    def _collate(self, samples: list[tuple[torch.Tensor, int]]):
        hq, indices = _collate_hq(samples)
        if not self.in_workers:
            return hq, indices
        # Runs in a worker, forked when the epoch's iterator was created: self.epoch is current.
        return self.degrader(hq, self.degrader.params(self.seed, indices, self.epoch))

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the shuffle order and degradation parameters of epoch `epoch`; iteration then
        begins at batch `start_batch` of that epoch."""
        self.epoch = int(epoch)
        self.batches.epoch, self.batches.start = int(epoch), int(start_batch)

    def __len__(self) -> int:
        """Batches in a whole epoch (`start_batch` not subtracted)."""
        return len(self.batches)

    def __iter__(self) -> Iterator[DegradedBatch]:
        # The order depends on (seed, epoch) only, not on how many epochs (or partial epochs)
        # were iterated before, so a resumed run sees the same batches.
        for item in self.loader:
            if self.in_workers:
                yield item if self.device is None else DegradedBatch(
                    *(t.to(self.device, non_blocking=True) if t is not None else None for t in item[:3]),
                    item.params)
                continue
            hq, indices = item
            if self.device is not None:
                hq = hq.to(self.device, non_blocking=True)
            yield self.degrader(hq, self.degrader.params(self.seed, indices, self.epoch))
