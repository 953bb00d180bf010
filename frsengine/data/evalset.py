"""A fixed, reproducible evaluation set: degraded copies of a folder of faces plus a JSON
record of every parameter used.

Layout of `output_dir`: `hq/NAME.png` (the 128x128 HQ face), `full/NAME.png` and, unless
singles=False, one folder per single degradation (`blur/`, `noise/`, `jpeg/`, `downup/`),
and `params.json` (see `build_eval_set`).

Reproducibility: files are sorted by relative path; a file's position in that list is its
sample index, which seeds its parameters, and batch k always holds positions
[k*B, (k+1)*B) (minus unreadable files). The batched torch backend's output depends on
which samples share a batch (shared canvas size), so fixed batches make a re-run, or a
resumed run, byte-for-byte identical to an uninterrupted one.

Resume: after every batch, `params.partial.json` (the settings plus every file recorded so
far) is rewritten atomically. A re-run with the same settings skips each batch whose files
are all recorded there (outputs present) or recorded as unreadable, and redoes any other
batch whole; different settings are refused. At the end `params.json` is written
atomically and the partial file removed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from frsengine import __version__
from frsengine.data.folder import resolve_files
from frsengine.degrade import SINGLES, Degrader, Preset, get_preset
from frsengine.errors import FrsError, ImageReadError
from frsengine.io.images import (
    MIN_SIDE, read_image, scan_folder, to_square, write_bytes_atomic, write_image,
)

FORMAT = "frsengine-evalset"
FORMAT_VERSION = 1
PARAMS_FILE = "params.json"
PARTIAL_FILE = "params.partial.json"

log = logging.getLogger("frsengine.data")


@dataclass
class EvalSetSummary:
    """What `build_eval_set` did."""

    output_dir: Path
    total: int = 0  # image files considered
    written: int = 0  # faces degraded and written by this run
    resumed: int = 0  # faces already written by an earlier, interrupted run
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (path, conversion note)
    ignored: list[str] = field(default_factory=list)  # files without an image extension
    params_path: Path | None = None
    names: list[str] = field(default_factory=list)  # output names of all good faces, in order
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        """Faces in the evaluation set (this run and earlier ones)."""
        return self.written + self.resumed


def output_dirs(singles: bool) -> list[str]:
    """Sub-folders of an evaluation set, HQ first."""
    return ["hq", "full"] + (list(SINGLES) if singles else [])


def output_names(rel_paths: list[str]) -> list[str]:
    """Output file names (relative, .png) for sources; sources that would share a name
    (a.jpg, a.png) keep their extension in it (a.jpg.png, a.png.png)."""
    names = [str(Path(r).with_suffix(".png").as_posix()) for r in rel_paths]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    names = [f"{r}.png" if counts[n] > 1 else n for r, n in zip(rel_paths, names)]
    if len(set(names)) != len(names):  # contrived clashes such as a.jpg, a.png, a.jpg.png
        names = [f"{r}.{i}.png" for i, r in enumerate(rel_paths)]
    return names


def build_eval_set(input_dir, output_dir, preset: str | Preset = "paper", backend: str = "torch",
                   seed: int = 0, size: int = 128, singles: bool = True, list_file=None,
                   batch_size: int = 32, device=None, progress: bool = True, *,
                   overrides: dict[str, object] | None = None, limit: int | None = None,
                   min_side: int = MIN_SIDE, max_pixels: int | None = None,
                   report: Callable[[str], None] | None = None) -> EvalSetSummary:
    """Degrade every face of `input_dir` into `output_dir` (see the module docstring).

    Unreadable files are reported (`report("skipped PATH: reason")`, default: the
    `frsengine.data` logger) and left out; conversions of odd files are reported as
    "note PATH: ...". `limit` keeps the first N files of the sorted list.
    """
    start = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if batch_size < 1 or size < 1:
        raise FrsError("batch size and image size must be positive")
    if output_dir.resolve() == input_dir.resolve():
        raise FrsError("the output folder must differ from the input folder")
    preset_obj = get_preset(preset, overrides)
    files, ignored = _select_files(input_dir, output_dir, list_file, limit)
    rels = [p.relative_to(input_dir).as_posix() for p in files]
    names = output_names(rels)
    summary = EvalSetSummary(output_dir, total=len(files), ignored=ignored)
    if not files:
        summary.seconds = time.perf_counter() - start
        return summary
    emit = report or _log_report
    settings = _settings(preset_obj, backend, device, seed, size, singles, batch_size, min_side,
                         max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS, rels)
    state = _load_state(output_dir, settings)
    dirs = output_dirs(singles)
    degrader = None  # built only when there is work: backends can be slow to start

    def done(i: int) -> bool:
        rec = state["files"].get(names[i])
        if rec is not None:
            return all((output_dir / d / names[i]).is_file() for d in dirs)
        return rels[i] in state["skipped"]

    bar = _progress(len(files), progress)
    say = (lambda msg: bar.write(msg, file=sys.stderr)) if progress and report is None else emit
    try:
        for lo in range(0, len(files), batch_size):
            batch = range(lo, min(lo + batch_size, len(files)))
            if all(done(i) for i in batch):
                summary.resumed += sum(names[i] in state["files"] for i in batch)
                bar.update(len(batch))
                continue
            faces, indices = [], []
            for i in batch:
                state["files"].pop(names[i], None)
                state["skipped"].pop(rels[i], None)
                state["notes"].pop(rels[i], None)
                try:
                    img, notes = read_image(files[i], min_side, max_pixels)
                except ImageReadError as exc:
                    state["skipped"][rels[i]] = exc.reason
                    say(f"skipped {exc.path}: {exc.reason}")
                    continue
                for note in notes:
                    say(f"note {files[i]}: {note}")
                faces.append(to_square(img, size))
                indices.append(i)
                if notes:
                    state["notes"][rels[i]] = notes
            if indices:
                if degrader is None:
                    degrader = Degrader(preset_obj, backend, device=device, singles=singles)
                params = degrader.params(seed, indices)
                out = degrader(torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2), params)
                _write_batch(output_dir, [names[i] for i in indices], out, singles)
                for i, p in zip(indices, params):
                    state["files"][names[i]] = {"source": rels[i], "index": i, "params": p.to_json()}
                summary.written += len(indices)
            _write_json(output_dir / PARTIAL_FILE, _record(settings, state, rels, names), compact=True)
            bar.update(len(batch))
    finally:
        bar.close()

    summary.skipped = [(str(input_dir / r), state["skipped"][r]) for r in rels if r in state["skipped"]]
    summary.notes = [(str(input_dir / r), n) for r in rels for n in state["notes"].get(r, [])]
    summary.names = [n for n in names if n in state["files"]]
    if summary.ok:
        summary.params_path = _write_json(output_dir / PARAMS_FILE, _record(settings, state, rels, names))
    (output_dir / PARTIAL_FILE).unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - start
    return summary


def _select_files(input_dir: Path, output_dir: Path, list_file, limit) -> tuple[list[Path], list[str]]:
    """Input files sorted by relative path (the sample order), and ignored non-images."""
    if list_file is not None:
        files, ignored = resolve_files(input_dir, list_file), []
    else:
        files, others = scan_folder(input_dir)
        ignored = [p.relative_to(input_dir).as_posix() for p in others]
    pairs = sorted((p.relative_to(input_dir).as_posix(), p) for p in files)
    # An output folder inside the input folder must not feed its own results back in.
    try:
        inner = output_dir.resolve().relative_to(input_dir.resolve()).as_posix() + "/"
        pairs = [(r, p) for r, p in pairs if not r.startswith(inner)]
    except ValueError:  # the output folder is elsewhere
        pass
    files = [p for _, p in pairs]
    return (files[:limit] if limit is not None else files), ignored


def _settings(preset: Preset, backend, device, seed, size, singles, batch_size, min_side,
              max_pixels, rels: list[str]) -> dict:
    """Everything that decides the outputs; a resumed run must match it exactly."""
    settings = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "frsengine_version": __version__,
        "preset": preset.to_dict(), "backend": backend,
        "device": str(device) if device is not None else "default",
        "seed": int(seed), "size": int(size), "dirs": output_dirs(singles),
        "batch_size": int(batch_size), "min_side": int(min_side), "max_pixels": None if max_pixels is None else int(max_pixels),
        "sources": {"count": len(rels),
                    "sha256": hashlib.sha256("\n".join(rels).encode()).hexdigest()},
    }
    return json.loads(json.dumps(settings))  # tuples -> lists, as read back from a file


def _load_state(output_dir: Path, settings: dict) -> dict:
    """Files and skips recorded by an earlier run with the same settings (final file
    first, else the partial one); a record made with other settings is refused."""
    for name in (PARAMS_FILE, PARTIAL_FILE):
        path = output_dir / name
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise FrsError(f"cannot read '{path}' ({exc}): delete it or use another output folder") from None
        old = {k: record.get(k) for k in settings}
        if old != settings:
            diff = sorted(k for k in settings if old[k] != settings[k])
            raise FrsError(f"'{output_dir}' holds an evaluation set made with other settings "
                           f"(different {', '.join(diff)}): use another output folder or delete it")
        notes = {rec["source"]: rec.get("notes", []) for rec in record.get("files", {}).values()}
        return {"files": dict(record.get("files", {})), "skipped": dict(record.get("skipped", {})),
                "notes": notes}
    return {"files": {}, "skipped": {}, "notes": {}}


def _record(settings: dict, state: dict, rels: list[str], names: list[str]) -> dict:
    """The params file: settings, then files and skips in sample order (stable bytes)."""
    files = {}
    for r, n in zip(rels, names):
        if n in state["files"]:
            rec = dict(state["files"][n])
            if state["notes"].get(r):
                rec["notes"] = state["notes"][r]
            files[n] = rec
    skipped = {r: state["skipped"][r] for r in rels if r in state["skipped"]}
    return {**settings, "files": files, "skipped": skipped}


def _write_batch(output_dir: Path, names: list[str], batch, singles: bool) -> None:
    images = {"hq": batch.hq, "full": batch.lq_full}
    if singles:
        for s, name in enumerate(SINGLES):
            images[name] = batch.lq_singles[:, s]
    arrays = {k: _to_uint8_hwc(v) for k, v in images.items()}
    for b, name in enumerate(names):
        for d, arr in arrays.items():
            write_image(output_dir / d / name, arr[b])


def _to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) float in [0,1] -> (B,H,W,3) uint8 (backends already quantise to 8 bits)."""
    return x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _write_json(path: Path, data: dict, compact: bool = False) -> Path:
    text = json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=1)
    return write_bytes_atomic(path, (text + "\n").encode())


def _log_report(message: str) -> None:
    (log.warning if message.startswith("skipped") else log.info)(message)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="img", desc="degrade", file=sys.stderr,
                dynamic_ncols=True)
