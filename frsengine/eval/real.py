"""No-reference evaluation on real LQ faces (the paper's real-world test, Table 5 / Fig. 8):
NIQE (`frsengine.metrics.niqe`, fitted on clean HQ faces) of the input and of each model's
output. Faces are centre-cropped and resized to the evaluation size first, as the synthetic
set's faces are."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from frsengine.errors import FrsError
from frsengine.eval.models import Method
from frsengine.eval.synthetic import CHUNK, run_method, to_uint8

NIQE_FILE = "niqe-model.safetensors"


def niqe_model_for(niqe_model: str | os.PathLike | None, niqe_fit: str | os.PathLike | None,
                   fallback_hq: Path | None, out: Path, size: int,
                   say: Callable[[str], None]) -> tuple[object, dict]:
    """The NIQE model and where it came from:
    - `niqe_fit` DIR: fitted on DIR's faces and saved to `niqe_model` (default OUT/niqe-model.safetensors);
    - else `niqe_model` FILE: loaded;
    - else, with a synthetic set, fitted on its HQ faces and saved next to them (reused later)."""
    from frsengine.metrics.niqe import NIQEModel, fit_niqe_from_folder

    if niqe_fit is not None:
        folder = Path(niqe_fit)
        if not folder.is_dir():
            raise FrsError(f"--niqe-fit '{folder}' is not a folder: pass a folder of clean HQ faces")
        target = Path(niqe_model) if niqe_model is not None else out / NIQE_FILE
        say(f"fitting NIQE on the faces of {folder} ...")
        model = fit_niqe_from_folder(folder, size=size)
        model.save(target)
        return model, {"fitted_on": str(folder), "file": str(target), "n_images": model.n_images,
                       "n_patches": model.n_patches, "patch_size": model.patch_size}
    if niqe_model is not None:
        model = NIQEModel.load(niqe_model)
        return model, {"file": str(niqe_model), "fitted_on": model.info.get("folder"), "n_images": model.n_images,
                       "n_patches": model.n_patches, "patch_size": model.patch_size}
    if fallback_hq is None:
        raise FrsError("--real needs a NIQE model: --niqe-model FILE, --niqe-fit DIR of clean HQ faces, "
                       "or --data (NIQE is then fitted on its HQ faces)")
    target = fallback_hq.parent / NIQE_FILE
    if target.is_file():
        model = NIQEModel.load(target)
    else:
        say(f"fitting NIQE on the HQ faces of the evaluation set ({fallback_hq}) ...")
        model = fit_niqe_from_folder(fallback_hq, size=size)
        model.save(target)
    return model, {"fitted_on": str(fallback_hq), "file": str(target), "n_images": model.n_images,
                   "n_patches": model.n_patches, "patch_size": model.patch_size}


def check_real_folder(folder: Path) -> list[Path]:
    """The image files of `folder`; one-line FrsError for a missing folder or one without images."""
    from frsengine.io import list_images

    if not folder.exists():
        raise FrsError(f"real-face folder '{folder}' does not exist: pass a folder of real LQ face images")
    if not folder.is_dir():
        raise FrsError(f"--real '{folder}' is not a folder: pass a folder of real LQ face images")
    files = list_images(folder)
    if not files:
        raise FrsError(f"real-face folder '{folder}' holds no image files (.png, .jpg, ...)")
    return files


def read_real_faces(folder: Path, size: int, say: Callable[[str], None]) -> tuple[list[str], list[np.ndarray],
                                                                                   list[tuple[str, str]]]:
    """(names, size x size uint8 faces, skipped (path, reason)); a bad image is reported and skipped."""
    from frsengine.errors import ImageReadError
    from frsengine.io import read_image, to_square

    files = check_real_folder(folder)
    names, faces, skipped = [], [], []
    for f in files:
        try:
            img, _ = read_image(f)
        except ImageReadError as exc:
            say(f"skipped {exc.path}: {exc.reason}")
            skipped.append((exc.path, exc.reason))
            continue
        names.append(f.relative_to(folder).as_posix())
        faces.append(to_square(img, size))
    if not faces:
        raise FrsError(f"no face of '{folder}' could be read ({len(skipped)} file(s) skipped, see above)")
    return names, faces, skipped


def evaluate_real(folder: str | os.PathLike, methods: list[Method], niqe_model, size: int, grid_faces: int = 4,
                  progress: bool = True, say: Callable[[str], None] = print) -> dict:
    """{"names", "skipped", "scores": {method: [niqe per face]}, "failed", "grid": {column: faces}}."""
    from tqdm import tqdm

    from frsengine.metrics.niqe import niqe

    names, faces, skipped = read_real_faces(Path(folder), size, say)
    runnable = [m for m in methods if m.runnable]
    scores = {m.label: [] for m in runnable}
    failed = {m.label: 0 for m in runnable}
    grid: dict[str, list[np.ndarray]] = {}
    bar = tqdm(total=len(runnable) * len(faces), unit="face", desc="real", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        for start in range(0, len(faces), CHUNK):
            x = torch.from_numpy(np.stack(faces[start:start + CHUNK])).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
            for m in runnable:
                y, bad = run_method(m, x)
                failed[m.label] += bad
                scores[m.label].extend(niqe(y, niqe_model).tolist())
                if start < grid_faces:
                    grid.setdefault(m.label, []).extend(to_uint8(y[:grid_faces - start]))
                bar.update(x.shape[0])
    finally:
        bar.close()
    return {"names": names, "skipped": skipped, "scores": scores, "failed": failed, "grid": grid}
