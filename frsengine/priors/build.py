"""`priors build`: the teacher pass over a folder of HQ faces (resumable, cached per image) and
the component dictionary built from the faces the teacher could label."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from frsengine.errors import FrsError, ImageReadError
from frsengine.io.images import read_image, to_square
from frsengine.priors.landmarks import TeacherCache, detect_landmarks


@dataclass
class TeacherSummary:
    total: int = 0
    done_before: int = 0
    labelled: int = 0
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0


def relative_names(root: Path, files: list[Path]) -> list[str]:
    return [p.relative_to(root).as_posix() for p in files]


def run_teacher(root: str | os.PathLike, names: list[str], cache_path: str | os.PathLike, size: int = 128,
                save_every: int = 500, progress: bool = True,
                report: Callable[[str], None] = print) -> tuple[TeacherCache, TeacherSummary]:
    """dlib landmarks for every listed face not yet in the cache; the cache is saved every
    `save_every` faces and at the end, so a re-run continues where an interrupted one stopped."""
    from tqdm import tqdm

    root, cache_path = Path(root), Path(cache_path)
    if cache_path.exists():
        cache = TeacherCache.load(cache_path)
        if cache.size != size:
            raise FrsError(f"teacher cache '{cache_path}' was made at size {cache.size}, not {size}: "
                           f"use --size {cache.size} or another --out")
    else:
        cache = TeacherCache(size, str(root))
    todo = [n for n in names if n not in cache]
    summary = TeacherSummary(total=len(names), done_before=len(names) - len(todo))
    start, since_save = time.perf_counter(), 0
    for name in tqdm(todo, desc="teacher (dlib)", unit="face", disable=not progress or not todo):
        try:
            img, _ = read_image(root / name)
        except ImageReadError as exc:
            summary.unreadable.append(name)
            report(f"skipped {exc.path}: {exc.reason}")
            continue
        result = detect_landmarks(img)
        cache.add(name, result, img.shape[0], img.shape[1])
        summary.labelled += 1
        since_save += 1
        if since_save >= save_every:
            cache.save(cache_path)
            since_save = 0
    if since_save or not cache_path.exists():
        cache.save(cache_path)
    summary.seconds = time.perf_counter() - start
    return cache, summary


def load_faces(root: str | os.PathLike, names: list[str], size: int = 128, progress: bool = False) -> torch.Tensor:
    """(N, 3, size, size) uint8 faces (square-cropped and resized as the teacher cache's frame)."""
    from tqdm import tqdm

    root = Path(root)
    out = torch.empty(len(names), 3, size, size, dtype=torch.uint8)
    for i, name in enumerate(tqdm(names, desc="loading faces", unit="face", disable=not progress)):
        img, _ = read_image(root / name)
        out[i] = torch.from_numpy(to_square(img, size)).permute(2, 0, 1)
    return out


def build_dictionary_file(root: str | os.PathLike, cache: TeacherCache, out: str | os.PathLike, config,
                          limit: int | None = None, progress: bool = True) -> Path:
    """Build and save the component dictionary from the faces the teacher labelled."""
    from tqdm import tqdm

    from frsengine.priors.dictionary import build_dictionary, save_dictionary
    from frsengine.priors.rasterize import component_boxes

    names, points = cache.usable()
    if limit is not None:
        names, points = names[:limit], points[:limit]
    if len(names) < config.atoms:
        raise FrsError(f"only {len(names)} labelled faces for {config.atoms} atoms per component: "
                       "use more faces (--limit) or fewer atoms (--atoms)")
    faces = load_faces(root, names, cache.size, progress)
    boxes = component_boxes(torch.from_numpy(points))
    with tqdm(total=len(names), desc="dictionary features", unit="face", disable=not progress) as bar:
        tensors = build_dictionary(faces, boxes, config, progress=bar.update)
    info = {"faces": len(names), "size": cache.size, "root": str(root)}
    return save_dictionary(out, tensors, config, info)


def default_cache_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".teacher.npz")


def sample_names(names: list[str], limit: int | None, seed: int = 0) -> list[str]:
    """A fixed subset of `limit` names (seeded), kept in list order; all when limit is None."""
    if limit is None or limit >= len(names):
        return list(names)
    keep = np.sort(np.random.default_rng(seed).choice(len(names), limit, replace=False))
    return [names[i] for i in keep]
