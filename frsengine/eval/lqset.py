"""The LQ set an evaluation runs on: `frsengine.data.evalset.build_eval_set` output, cached
under a folder named by a key of everything that decides it, and reused when present.

Key: the data folder's real path, every image file's relative name, byte size and modification
time (so an edited or added face makes a new set), the seed, the preset (with overrides), the
face size and the degradation backend. A set left half-built by an interrupted run is resumed
by `build_eval_set` itself.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from frsengine.errors import FrsError

CACHE_PREFIX = "evalset-"


@dataclass
class LQSet:
    """A built evaluation set: `root/<folder>/<name>` for every name, HQ under `root/hq`."""

    root: Path
    names: list[str]
    key: str
    reused: bool  # every face was already there (nothing degraded by this run)
    written: int
    skipped: list[tuple[str, str]]
    params_path: Path | None


def check_data_folder(data: str | os.PathLike) -> tuple[Path, list[Path]]:
    """(folder, its image files); one-line FrsError for a missing folder or one without images."""
    from frsengine.io import scan_folder

    data = Path(data)
    if not data.exists():
        raise FrsError(f"data folder '{data}' does not exist: pass a folder of HQ face images")
    if not data.is_dir():
        raise FrsError(f"--data '{data}' is not a folder: pass a folder of HQ face images")
    files, _ = scan_folder(data)
    if not files:
        raise FrsError(f"data folder '{data}' holds no image files (.png, .jpg, ...): pass a folder of HQ faces")
    return data, files


def cache_key(data: Path, files: list[Path], preset_dict: dict, seed: int, size: int, backend: str,
              limit: int | None) -> str:
    """16 hex digits naming the set (see the module docstring)."""
    listing = []
    for f in sorted(files, key=lambda p: p.relative_to(data).as_posix()):
        try:
            st = f.stat()
            listing.append([f.relative_to(data).as_posix(), st.st_size, st.st_mtime_ns])
        except OSError:  # vanished or unreadable: build_eval_set reports it
            listing.append([f.relative_to(data).as_posix(), None, None])
    record = {"data": os.path.realpath(data), "files": listing, "preset": preset_dict, "seed": int(seed),
              "size": int(size), "backend": backend, "limit": limit}
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare_lq_set(data: str | os.PathLike, cache_dir: str | os.PathLike, *, preset: str = "paper",
                   overrides: dict[str, object] | None = None, seed: int = 0, size: int = 128,
                   backend: str = "torch", device=None, limit: int | None = None, batch_size: int = 32,
                   progress: bool = True, report: Callable[[str], None] | None = None) -> LQSet:
    """Build (or reuse) the evaluation set of `data` under `cache_dir/evalset-KEY`."""
    from frsengine.data.evalset import build_eval_set
    from frsengine.degrade import get_preset

    data, files = check_data_folder(data)
    cache_dir = Path(cache_dir)
    try:
        cache_dir.resolve().relative_to(data.resolve())
        raise FrsError(f"the cache folder '{cache_dir}' lies inside the data folder '{data}': choose one outside it")
    except ValueError:
        pass
    preset_obj = get_preset(preset, overrides)
    key = cache_key(data, files, preset_obj.to_dict(), seed, size, backend, limit)
    root = cache_dir / f"{CACHE_PREFIX}{key}"
    summary = build_eval_set(data, root, preset_obj, backend, seed, size=size, singles=True, batch_size=batch_size,
                             device=device, progress=progress, limit=limit, report=report)
    if not summary.ok:
        raise FrsError(f"no face of '{data}' could be read ({len(summary.skipped)} file(s) skipped, see above): "
                       "pass a folder of readable face images")
    return LQSet(root, summary.names, key, reused=summary.written == 0, written=summary.written,
                 skipped=summary.skipped, params_path=summary.params_path)
