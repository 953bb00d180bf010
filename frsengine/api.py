"""``frsengine.restore``: restore face crops or whole photos in batches, on any backend.

    import frsengine
    out = frsengine.restore(images, model="models/frsnet-utk")          # numpy / PIL / tensors / paths
    frsengine.restore("photos/", model=..., aligned=False, output_dir="restored/")

Inputs come back as the same kind: numpy arrays (HxW, HxWx1/3/4; uint8, uint16 or float in [0, 1];
RGB, or BGR with ``bgr=True``) with the same shape and dtype; PIL images in the same mode and size;
torch tensors ((C, H, W) or (N, C, H, W), float in [0, 1]) with the same shape, dtype and device;
file paths, a folder or a list of paths: written under ``output_dir`` (paths returned, ``None`` for a
file that failed), or returned as numpy arrays when no ``output_dir`` is given. Gray images stay
gray (also RGB images whose channels are equal), alpha is kept as it was, 16-bit stays 16-bit.

``aligned=True``: each image is a face crop; it is resized to the model's size and back.
``aligned=False``: whole photos; faces are found (dlib HOG, or CNN), aligned to the package's
5-point template by a similarity transform, restored together with every other face of the batch
and pasted back under a feathered mask. Faces smaller than ``min_face`` pixels are left alone and
reported; a photo without a face comes back unchanged, with a warning.

A face whose output holds NaN/inf is left as it was and reported. Problems are announced with
:class:`RestoreWarning`; ``return_report=True`` also returns a :class:`RestoreReport`.
"""
from __future__ import annotations

import os
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from frsengine.errors import FrsError, ImageReadError
from frsengine.export.backends import Backend, make_backend
from frsengine.export.package import ModelPackage, load_package
from frsengine.io import MIN_SIDE, list_images, read_image, write_bytes_atomic

DEFAULT_BATCH = 16
DEFAULT_MIN_FACE = 32
PHOTO_PIXELS = 48_000_000  # whole-image mode: photos (pixels) gathered for one model batch, at most
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_KEEP_EXT = (".png", ".jpg", ".jpeg")


class RestoreWarning(UserWarning):
    """Something in a restore call was skipped or left unchanged (no face, NaN output, bad file)."""


@dataclass
class ItemReport:
    """What happened to one input."""

    name: str
    ok: bool = True
    faces: int = 0                                   # faces restored
    skipped_faces: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    output: Path | None = None

    def fail(self, message: str) -> None:
        self.ok, self.error = False, message


@dataclass
class RestoreReport:
    backend: str
    items: list[ItemReport]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(item.ok for item in self.items)

    @property
    def failed(self) -> list[ItemReport]:
        return [item for item in self.items if not item.ok]


# ---------------------------------------------------------------------------------------------
# Conversions: any input kind <-> float32 HxWx3 RGB in [0, 1] (and back to the same kind)

Rebuild = Callable[[np.ndarray], Any]


def _from_array(a: np.ndarray, bgr: bool, where: str) -> tuple[np.ndarray, Rebuild, bool]:
    """(rgb float32 HxWx3, rebuild(rgb) -> array like ``a``, is_gray)."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        scale = 255.0
    elif a.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        scale = 1.0
    else:
        raise FrsError(f"{where}: unsupported dtype {a.dtype}: pass uint8, uint16 or float (0..1) images")
    chans = a[:, :, None] if a.ndim == 2 else a
    if chans.ndim != 3 or chans.shape[2] not in (1, 2, 3, 4):
        raise FrsError(f"{where}: expected an HxW or HxWxC image (C = 1, 2, 3 or 4), got shape {a.shape}")
    h, w, c = chans.shape
    if min(h, w) < MIN_SIDE:
        raise FrsError(f"{where}: too small ({w}x{h} px, the minimum side is {MIN_SIDE} px): use a larger image")
    f = chans.astype(np.float32)
    if scale != 1.0:
        f *= 1.0 / scale
    elif not np.isfinite(f).all():
        raise FrsError(f"{where}: the image holds NaN or inf values: clean the input")
    elif f.size and (f.max() > 1.0 + 1e-3 or f.min() < -1e-3):
        raise FrsError(f"{where}: float images must lie in [0, 1], this one spans [{f.min():g}, {f.max():g}]: "
                       "divide by 255 (or pass uint8)")
    np.clip(f, 0.0, 1.0, out=f)
    alpha = f[:, :, c - 1].copy() if c in (2, 4) else None
    if c <= 2:
        gray = True
        rgb = np.repeat(f[:, :, :1], 3, axis=2)
    else:
        rgb = f[:, :, 2::-1] if bgr else f[:, :, :3]
        gray = bool(np.array_equal(chans[:, :, 0], chans[:, :, 1]) and np.array_equal(chans[:, :, 1], chans[:, :, 2]))
    rgb = np.ascontiguousarray(rgb)

    def rebuild(out: np.ndarray) -> np.ndarray:
        if c <= 2:
            y = (out @ _LUMA)[:, :, None]
        else:
            y = np.repeat((out @ _LUMA)[:, :, None], 3, axis=2) if gray else out
            if bgr:
                y = y[:, :, ::-1]
        if alpha is not None:
            y = np.concatenate([y, alpha[:, :, None]], axis=2)
        if scale != 1.0:
            y = np.round(np.clip(y, 0.0, 1.0) * scale).astype(a.dtype)
        else:
            y = y.astype(a.dtype)
        return np.ascontiguousarray(y.reshape(a.shape))

    return rgb, rebuild, gray


_PIL_DIRECT = {"L", "LA", "RGB", "RGBA", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def _from_pil(im: Image.Image, where: str) -> tuple[np.ndarray, Rebuild, bool, list[str]]:
    notes = []
    mode = im.mode
    if mode not in _PIL_DIRECT and mode != "I":
        target = "RGBA" if (mode == "P" and ("transparency" in im.info or im.palette.mode == "RGBA")) or "A" in mode else "RGB"
        notes.append(f"{mode} image returned as {target}")
        im, mode = im.convert(target), target
    arr = np.asarray(im)
    if mode == "I":  # 32-bit integer gray: 16-bit data in practice
        if arr.min() < 0 or arr.max() > 65535:
            raise FrsError(f"{where}: 32-bit integer image outside 0..65535: convert it to 16-bit or 8-bit")
        arr = arr.astype(np.uint16)
    elif mode.startswith("I;16"):
        arr = arr.astype(np.uint16)
    rgb, rebuild_array, gray = _from_array(arr, False, where)

    def rebuild(out: np.ndarray) -> Image.Image:
        y = rebuild_array(out)
        if mode == "I":
            return Image.fromarray(y.astype(np.int32), "I")
        if mode.startswith("I;16"):
            return Image.fromarray(y).convert(mode) if mode != "I;16" else Image.fromarray(y)
        return Image.fromarray(y, mode)

    return rgb, rebuild, gray, notes


def _from_tensor(t: torch.Tensor, where: str) -> tuple[np.ndarray, Rebuild, bool]:
    """One (C, H, W) float tensor."""
    if not t.is_floating_point():
        raise FrsError(f"{where}: tensors must be float in [0, 1], got {t.dtype}: divide by 255 first")
    if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
        raise FrsError(f"{where}: expected (C, H, W) with C = 1, 3 or 4, got {tuple(t.shape)}")
    arr = t.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
    rgb, rebuild_array, gray = _from_array(arr, False, where)

    def rebuild(out: np.ndarray) -> torch.Tensor:
        y = torch.from_numpy(rebuild_array(out)).permute(2, 0, 1)
        return y.to(t.device, t.dtype)

    return rgb, rebuild, gray


def _read_file(path: Path, max_pixels: int | None) -> tuple[np.ndarray, Rebuild, bool, list[str]]:
    """Decode with the robust reader; files that it converts (gray, alpha, 16-bit) are re-read
    unchanged so their output keeps that form. rebuild -> RGB(A)-order array (HxW when gray)."""
    rgb8, notes = read_image(path, max_pixels=max_pixels)
    text = " ".join(notes)
    arr: np.ndarray = rgb8
    if "EXIF" not in text and ("alpha" in text or "transparent" in text or "16-bit" in text):
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is not None and raw.shape[:2] == rgb8.shape[:2] and raw.dtype in (np.uint8, np.uint16):
            if raw.ndim == 3 and raw.shape[2] == 3:
                raw = raw[:, :, ::-1]
            elif raw.ndim == 3 and raw.shape[2] == 4:
                raw = raw[:, :, [2, 1, 0, 3]]
            arr = np.ascontiguousarray(raw)
            notes = [n for n in notes if "alpha" not in n and "transparent" not in n and "16-bit" not in n
                     and "grayscale" not in n]
            if "16-bit" in text:
                notes.append("16-bit image: output written as 16-bit PNG")
            if arr.ndim == 3 and arr.shape[2] == 4:
                notes.append("alpha channel kept as it was")
    elif "grayscale" in text:
        arr = np.ascontiguousarray(rgb8[:, :, 0])
    rgb, rebuild, gray = _from_array(arr, False, str(path))
    return rgb, rebuild, gray, notes


def _encode(arr: np.ndarray, ext: str) -> bytes:
    """PNG/JPEG bytes of an RGB(A)-order (or gray) uint8/uint16 array."""
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr), params)
    if not ok:
        raise FrsError(f"could not encode a {arr.dtype} {arr.shape} image as {ext}")
    return buf.tobytes()


def _output_ext(src: Path, arr: np.ndarray) -> str:
    ext = src.suffix.lower()
    needs_png = arr.dtype != np.uint8 or (arr.ndim == 3 and arr.shape[2] in (2, 4))
    return ext if ext in _KEEP_EXT and not (needs_png and ext != ".png") else ".png"


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# The restorer: model + backend + face geometry


class _WithPriors(torch.nn.Module):
    """MFPSNet with its prior function: forward(x) -> the last pass's output."""

    def __init__(self, model: torch.nn.Module, prior_fn: Callable):
        super().__init__()
        self.model, self.prior_fn = model, prior_fn
        self.cfg = model.cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, prior_fn=self.prior_fn)[-1]


@dataclass
class _Job:
    rgb: np.ndarray
    rebuild: Rebuild
    gray: bool
    report: ItemReport
    crops: list[np.ndarray] = field(default_factory=list)
    transforms: list[np.ndarray] = field(default_factory=list)
    source: Any = None


class Restorer:
    """A loaded package on a backend, with the face detector and template; reusable across calls
    (``frsengine.restore`` keeps the last ones it made)."""

    def __init__(self, model: str | os.PathLike | ModelPackage | None = None, *, backend: str = "auto",
                 device: str | torch.device | None = None, precision: str | None = None,
                 batch_size: int = DEFAULT_BATCH, detector: str = "hog", min_face: int = DEFAULT_MIN_FACE,
                 prior_fn: Callable | None = None, feather: float = 0.06):
        from frsengine.face.align import face_template

        if batch_size < 1:
            raise FrsError(f"batch_size must be at least 1, got {batch_size}")
        if detector not in ("hog", "cnn"):
            raise FrsError(f"detector must be 'hog' or 'cnn', got {detector!r}")
        self.package = model if isinstance(model, ModelPackage) else load_package(model)
        if self.package.network == "mfpsnet" and prior_fn is None:
            raise FrsError(f"{self.package.path} is an MFPSNet package: pass prior_fn (a function from a "
                           "(N, 3, H, W) batch to a dict of prior maps) or use an FRSNet package")
        self.size = self.package.input_size
        self.batch_size, self.detector, self.min_face, self.feather = batch_size, detector, min_face, feather
        self.backend: Backend = make_backend(self.package, backend, device, precision, batch_size,
                                             wrap=(lambda m: _WithPriors(m, prior_fn)) if prior_fn else None)
        points = self.package.meta.get("face_template")
        self.template = np.asarray(points, np.float64) if points else face_template(self.size)

    # -- model ------------------------------------------------------------------------------
    def run_faces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Restore a float (N, 3, H, W) batch at the model's size: (outputs clamped to [0, 1]
        on x's device, a bool (N,) tensor that is False where the output was NaN/inf — those
        faces come back unchanged)."""
        outs, oks = [], []
        for i in range(0, x.shape[0], self.batch_size):
            chunk = x[i:i + self.batch_size]
            y = self.backend(chunk).to(x.device, torch.float32)
            finite = torch.isfinite(y).flatten(1).all(1)
            y = torch.where(finite[:, None, None, None], y.clamp(0.0, 1.0), chunk.float())
            outs.append(y)
            oks.append(finite.cpu())
        return torch.cat(outs), torch.cat(oks)

    # -- images -----------------------------------------------------------------------------
    def prepare(self, job: _Job, aligned: bool) -> _Job:
        """Fill ``job.crops`` (model-size float32 RGB) and, for whole photos, ``job.transforms``."""
        h, w = self.size
        rgb = job.rgb
        if aligned:
            if rgb.shape[:2] == (h, w):
                job.crops = [rgb]
            else:
                shrink = rgb.shape[0] > h or rgb.shape[1] > w
                job.crops = [cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)]
            return job
        from frsengine.face.align import similarity_transform, warp_face
        from frsengine.face.detect import detect_faces

        faces = detect_faces(_to_uint8(rgb), self.detector)
        for face in faces:
            if face.size < self.min_face:
                job.report.skipped_faces.append(f"{face.describe()}: below min_face={self.min_face} px, left unchanged")
                continue
            m = similarity_transform(face.landmarks, self.template)
            job.crops.append(warp_face(rgb, m, (h, w)))
            job.transforms.append(m)
        if not faces:
            job.report.notes.append("no face found: image left unchanged")
        return job

    def finish(self, job: _Job, restored: Sequence[np.ndarray], ok: Sequence[bool]) -> Any:
        """Put the restored crops back; returns the input's kind (via ``job.rebuild``)."""
        from frsengine.face.align import paste_face

        bad = sum(not o for o in ok)
        if bad:
            job.report.fail(f"the model produced NaN/inf for {bad} face(s): left unchanged (try fp32 or "
                            "backend='torch')")
        if job.transforms or not restored:
            out = job.rgb.copy()
            for face, m, good in zip(restored, job.transforms, ok):
                if good:
                    paste_face(out, face, m, self.feather)
        else:
            face = restored[0]
            H, W = job.rgb.shape[:2]
            if face.shape[:2] != (H, W):
                grow = H > face.shape[0] or W > face.shape[1]
                face = cv2.resize(face, (W, H), interpolation=cv2.INTER_CUBIC if grow else cv2.INTER_AREA)
            out = face if ok[0] else job.rgb
        job.report.faces = sum(bool(o) for o in ok)
        return job.rebuild(np.clip(out, 0.0, 1.0))

    def run_jobs(self, jobs: Sequence[_Job]) -> list[tuple[list[np.ndarray], list[bool]]]:
        """Restore every crop of ``jobs`` in shared batches; per job (crops, ok flags)."""
        crops = [c for job in jobs for c in job.crops]
        if not crops:
            return [([], []) for _ in jobs]
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)
        y, ok = self.run_faces(x)
        y = y.permute(0, 2, 3, 1).cpu().numpy()
        results, i = [], 0
        for job in jobs:
            n = len(job.crops)
            results.append((list(y[i:i + n]), ok[i:i + n].tolist()))
            i += n
        return results

    def restore_jobs(self, jobs: list[_Job], aligned: bool) -> list[Any]:
        for job in jobs:
            self.prepare(job, aligned)
        return [self.finish(job, *res) for job, res in zip(jobs, self.run_jobs(jobs))]


# ---------------------------------------------------------------------------------------------
# Files: decode and encode in worker threads around the model


def check_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and make sure files can be written there (one-line FrsError)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".frsengine-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise FrsError(f"cannot write to output folder '{path}' ({reason}): choose another output folder") from None
    return path


def output_names(files: Sequence[Path], roots: Sequence[Path | None] | None = None) -> list[str]:
    """Relative output names (without extension): the path under its root folder, or the file
    name; later duplicates get a numeric suffix."""
    names, seen = [], set()
    for i, f in enumerate(files):
        root = roots[i] if roots else None
        rel = f.relative_to(root) if root is not None else Path(f.name)
        stem = str(rel.with_suffix(""))
        name, n = stem, 1
        while name in seen:
            name, n = f"{stem}_{n}", n + 1
        seen.add(name)
        names.append(name)
    return names


def restore_files(files: Sequence[str | os.PathLike], restorer: Restorer, *, output_dir: str | os.PathLike | None = None,
                  names: Sequence[str] | None = None, aligned: bool = True, compare: bool = False, workers: int = 2,
                  max_pixels: int | None = None, on_item: Callable[[ItemReport], None] | None = None,
                  ) -> tuple[list[ItemReport], list[np.ndarray | None]]:
    """Restore image files in batches of ``restorer.batch_size`` images. Decoding (and face
    detection) run in ``workers`` threads ahead of the model, encoding and writing in another, so
    the model is not kept waiting. A file that cannot be read or written is reported in its
    :class:`ItemReport` and skipped. With ``output_dir``, outputs are written as
    ``output_dir/NAME.ext`` (never over an input file) and ``compare`` adds
    ``output_dir/compare/NAME.png`` (input | restored); without it, the arrays are returned."""
    files = [Path(f) for f in files]
    names = list(names) if names is not None else output_names(files)
    out_root = check_output_dir(output_dir) if output_dir is not None else None
    inputs = {os.path.realpath(f) for f in files}
    reports = [ItemReport(str(f)) for f in files]
    arrays: list[np.ndarray | None] = [None] * len(files)

    def load(i: int) -> _Job | None:
        try:
            rgb, rebuild, gray, notes = _read_file(files[i], max_pixels)
            reports[i].notes.extend(notes)
            return restorer.prepare(_Job(rgb, rebuild, gray, reports[i], source=i), aligned)
        except ImageReadError as exc:
            reports[i].fail(exc.reason)
        except FrsError as exc:
            reports[i].fail(str(exc))
        except Exception as exc:  # a decoder or detector failure on one odd file must not stop the batch
            reports[i].fail(f"could not be processed ({type(exc).__name__}: {_first_line(exc)})")
        return None

    def save(job: _Job, restored, ok) -> None:
        i = job.source
        try:
            out = restorer.finish(job, restored, ok)
            if out_root is None:
                arrays[i] = out
            else:
                target = out_root / (names[i] + _output_ext(files[i], out))
                if os.path.realpath(target) in inputs:
                    raise FrsError(f"output {target} would overwrite an input file: choose another output folder")
                write_bytes_atomic(target, _encode(out, target.suffix.lower()))
                job.report.output = target
                if compare:
                    _write_compare(out_root / "compare" / (names[i] + ".png"), job.rgb, out)
        except FrsError as exc:
            job.report.fail(str(exc))
        except OSError as exc:
            job.report.fail(f"cannot write output ({exc.strerror or _first_line(exc)}): check the output folder")
        except Exception as exc:  # e.g. an encoder failure on one image
            job.report.fail(f"could not be written ({type(exc).__name__}: {_first_line(exc)})")
        finally:
            if on_item is not None:
                on_item(job.report)

    batch = restorer.batch_size
    # Crops: batch_size images per model call, two batches decoded ahead. Whole photos: faces of up
    # to batch_size images per call, but at most PHOTO_PIXELS of photos in memory (float32 copies).
    ahead = 2 * batch if aligned else max(2, workers + 1)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="frs-decode") as decode_pool, \
            ThreadPoolExecutor(1, thread_name_prefix="frs-encode") as encode_pool:
        todo = iter(range(len(files)))
        pending: deque[tuple[int, Future]] = deque((i, decode_pool.submit(load, i)) for i in _take(todo, ahead))
        written: list[Future] = []
        while pending:
            jobs: list[_Job] = []
            while pending and len(jobs) < batch and (aligned or (
                    sum(len(j.crops) for j in jobs) < batch and sum(j.rgb.size for j in jobs) < 3 * PHOTO_PIXELS)):
                i, fut = pending.popleft()
                pending.extend((j, decode_pool.submit(load, j)) for j in _take(todo, 1))
                job = fut.result()
                if job is not None:
                    jobs.append(job)
                elif on_item is not None:
                    on_item(reports[i])
            if jobs:
                for job, (restored, ok) in zip(jobs, restorer.run_jobs(jobs)):
                    written.append(encode_pool.submit(save, job, restored, ok))
        for fut in written:
            fut.result()
    return reports, arrays


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _take(it: Iterator[int], n: int) -> list[int]:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def _write_compare(path: Path, lq: np.ndarray, restored: np.ndarray) -> None:
    from frsengine.io import save_grid

    def rgb8(a):
        a = np.asarray(a)
        if a.dtype == np.uint16:
            a = (a >> 8).astype(np.uint8)
        if a.ndim == 3 and a.shape[2] in (2, 4):
            a = a[:, :, :-1]
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        return a if a.ndim == 2 else np.ascontiguousarray(a[:, :, :3])

    out = rgb8(restored)
    lq8 = _to_uint8(lq)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    save_grid(path, [[lq8, out]], ["input", "restored"])


# ---------------------------------------------------------------------------------------------
# frsengine.restore

_CACHE: dict[tuple, Restorer] = {}
_CACHE_SIZE = 2


def _restorer_for(model, backend, device, precision, batch_size, detector, min_face, prior_fn) -> Restorer:
    if isinstance(model, Restorer):
        return model
    key = None
    if not isinstance(model, ModelPackage):
        src = model if model is not None else os.environ.get("FRSENGINE_MODEL")
        if src is not None and os.path.exists(src):
            key = (os.path.realpath(src), os.stat(src).st_mtime_ns, backend, str(device), precision, batch_size,
                   detector, min_face, id(prior_fn))
    if key is not None and key in _CACHE:
        return _CACHE[key]
    restorer = Restorer(model, backend=backend, device=device, precision=precision, batch_size=batch_size,
                        detector=detector, min_face=min_face, prior_fn=prior_fn)
    if key is not None:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = restorer
    return restorer


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def restore(inputs, model: str | os.PathLike | ModelPackage | Restorer | None = None, *, aligned: bool = True,
            backend: str = "auto", device: str | torch.device | None = None, batch_size: int = DEFAULT_BATCH,
            bgr: bool = False, precision: str | None = None, output_dir: str | os.PathLike | None = None,
            detector: str = "hog", min_face: int = DEFAULT_MIN_FACE, prior_fn: Callable | None = None,
            compare: bool = False, max_pixels: int | None = None, workers: int = 2, return_report: bool = False):
    """Restore faces; see the module docstring for the input kinds and what comes back.

    model: a package folder / ``.safetensors`` file (``frsengine.export.save_package``), a loaded
    :class:`ModelPackage`, or a :class:`Restorer`; ``None`` uses $FRSENGINE_MODEL (there is no
    built-in default model yet). backend: auto, torch, compile, onnxruntime or tensorrt.
    """
    t0 = time.perf_counter()
    restorer = _restorer_for(model, backend, device, precision, batch_size, detector, min_face, prior_fn)
    if _is_path(inputs) or (isinstance(inputs, (list, tuple)) and inputs and all(_is_path(x) for x in inputs)):
        single = _is_path(inputs) and not Path(inputs).is_dir()
        files, roots = _expand_paths([inputs] if _is_path(inputs) else list(inputs))
        reports, arrays = restore_files(files, restorer, output_dir=output_dir, names=output_names(files, roots),
                                        aligned=aligned, compare=compare, workers=workers, max_pixels=max_pixels)
        result: Any = [r.output for r in reports] if output_dir is not None else arrays
        for r in reports:
            _warn_item(r)
        if single:
            result = result[0]
    else:
        if output_dir is not None or compare:
            raise FrsError("output_dir/compare apply to file inputs; in-memory inputs are returned")
        result, reports = _restore_memory(inputs, restorer, aligned, bgr)
    if return_report:
        return result, RestoreReport(restorer.backend.describe(), reports, time.perf_counter() - t0)
    return result


def _expand_paths(items: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path | None]]:
    files, roots = [], []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            files += found
            roots += [p] * len(found)
        else:
            files.append(p)  # a missing file is reported as such by the reader
            roots.append(None)
    return files, roots


def _warn_item(r: ItemReport) -> None:
    for s in r.skipped_faces:
        warnings.warn(f"{r.name}: {s}", RestoreWarning, stacklevel=3)
    for n in r.notes:
        if n.startswith("no face"):
            warnings.warn(f"{r.name}: {n}", RestoreWarning, stacklevel=3)
    if r.error:
        warnings.warn(f"{r.name}: {r.error}", RestoreWarning, stacklevel=3)


def _restore_memory(inputs, restorer: Restorer, aligned: bool, bgr: bool) -> tuple[Any, list[ItemReport]]:
    # Fast path: a float NCHW RGB batch already at the model's size stays on its device.
    if (isinstance(inputs, torch.Tensor) and aligned and inputs.dim() == 4 and inputs.is_floating_point()
            and inputs.shape[1] == 3 and tuple(inputs.shape[-2:]) == restorer.size):
        x = inputs.detach()
        if not torch.isfinite(x).all():
            raise FrsError("input tensor holds NaN or inf values: clean the input")
        if x.numel() and (float(x.max()) > 1.0 + 1e-3 or float(x.min()) < -1e-3):
            raise FrsError(f"input tensor must lie in [0, 1], it spans [{float(x.min()):g}, {float(x.max()):g}]: "
                           "divide by 255")
        y, ok = restorer.run_faces(x.clamp(0.0, 1.0))
        reports = [ItemReport(f"tensor[{i}]", faces=int(o)) for i, o in enumerate(ok.tolist())]
        for r, o in zip(reports, ok.tolist()):
            if not o:
                r.fail("the model produced NaN/inf for this face: left unchanged (try fp32 or backend='torch')")
                _warn_item(r)
        return y.to(inputs.dtype), reports

    def jobs_for(items, make) -> list[_Job]:
        jobs = []
        for i, item in enumerate(items):
            rgb, rebuild, gray, *notes = make(item, i)
            jobs.append(_Job(rgb, rebuild, gray, ItemReport(f"input[{i}]", notes=notes[0] if notes else []), source=i))
        return jobs

    def array_job(a, i):
        return _from_array(a, bgr, f"input[{i}]")

    def pil_job(im, i):
        return _from_pil(im, f"input[{i}]")

    def tensor_job(t, i):
        return _from_tensor(t, f"input[{i}]")

    kinds = ((np.ndarray, array_job), (Image.Image, pil_job), (torch.Tensor, tensor_job))
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        jobs = jobs_for(list(inputs), array_job)
        outs = restorer.restore_jobs(jobs, aligned)
        result: Any = np.stack(outs)
    elif isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        jobs = jobs_for(list(inputs), tensor_job)
        result = torch.stack(restorer.restore_jobs(jobs, aligned))
    elif isinstance(inputs, (list, tuple)):
        if not inputs:
            return [], []
        make = next((m for t, m in kinds if isinstance(inputs[0], t)), None)
        if make is None or not all(isinstance(x, type(inputs[0])) or
                                   (isinstance(x, Image.Image) and isinstance(inputs[0], Image.Image)) for x in inputs):
            raise FrsError("inputs must all be of one kind: paths, numpy arrays, PIL images or torch tensors")
        jobs = jobs_for(inputs, make)
        result = restorer.restore_jobs(jobs, aligned)
        result = tuple(result) if isinstance(inputs, tuple) else result
    else:
        make = next((m for t, m in kinds if isinstance(inputs, t)), None)
        if make is None:
            raise FrsError(f"cannot restore a {type(inputs).__name__}: pass file paths, a folder, numpy arrays "
                           "(HxWxC), PIL images or torch tensors ((N,) C, H, W)")
        jobs = jobs_for([inputs], make)
        result = restorer.restore_jobs(jobs, aligned)[0]
    reports = [j.report for j in jobs]
    for r in reports:
        _warn_item(r)
    return result, reports
