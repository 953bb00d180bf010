"""Robust image reading and atomic writing.

`read_image` either returns an HxWx3 uint8 RGB array or raises `ImageReadError` with a
one-line reason that says what is wrong and how to fix it. Inputs that are odd but usable
(grayscale, alpha, palette, 16-bit, CMYK, EXIF-rotated, multi-frame) are converted, and each
conversion is reported as a note, so that callers can tell the user what happened.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from frsengine.errors import FrsError, ImageReadError

# Extensions `list_images` treats as images (lower case). Anything else is ignored there.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
# Faces are resized to 128x128; anything under 16 px a side carries no usable face.
MIN_SIDE = 16
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_EXIF_ORIENTATION = 0x0112
_PIL_LIMIT_LOCK = threading.Lock()


def read_image(path: str | os.PathLike, min_side: int = MIN_SIDE,
               max_pixels: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Read an image file as (HxWx3 uint8 RGB array, notes on conversions made).

    Raises ImageReadError for missing/unreadable files, non-images, truncated or corrupt
    data, images with a side below `min_side`, and images above `max_pixels` pixels
    (default: PIL's decompression-bomb limit, `PIL.Image.MAX_IMAGE_PIXELS`; a larger
    `max_pixels` lifts PIL's limit while this file is opened).
    """
    path = Path(path)
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    _check_file(path)
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1x and 2x its limit: _check_size refuses those (with the
            # image's size in the message) before anything is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(path, limit) as im:
                _check_size(path, im.size, min_side, limit)
                notes = []
                rawmode = im.tile[0].args if im.tile and isinstance(im.tile[0].args, str) else ""
                # Force the whole decode now: PIL decodes lazily, and a truncated file only
                # fails here (LOAD_TRUNCATED_IMAGES stays False, so it does fail).
                im.load()
                n_frames = getattr(im, "n_frames", 1)
                if n_frames > 1:
                    notes.append(f"{n_frames} frames: used the first")
                array = _to_rgb8(_apply_orientation(im, notes), notes, rawmode)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:  # above 2x PIL's limit: raised by Image.open
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageReadError(path, _too_large_reason(None, limit, pixels and int(pixels[1]))) from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image or an unknown format: convert it to PNG or JPEG "
                                   "(or remove it from the folder)") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied: make the file readable (chmod +r)") from None
    except MemoryError:
        raise ImageReadError(path, _too_large_reason(None, limit)) from None
    except Exception as exc:  # any decoder failure: OSError, SyntaxError, ValueError, zlib errors...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageReadError(path, f"truncated or corrupt image data ({detail}): re-export or "
                                   "re-download the file") from None
    return array, notes


@contextlib.contextmanager
def _open(path: Path, limit: int | None):
    """Image.open with PIL's global bomb limit raised to `limit` if that is larger (PIL
    has no per-call limit; the lock keeps concurrent raises from clobbering each other)."""
    current = Image.MAX_IMAGE_PIXELS
    if current is None or (limit is not None and limit <= current):
        im = Image.open(path)
    else:
        with _PIL_LIMIT_LOCK:
            Image.MAX_IMAGE_PIXELS = limit
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = current
    with im:
        yield im


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "no such file: check the path")
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image file: pass a file, or list a folder "
                                   "with list_images()")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file (device, socket or pipe): pass an image file")
    if not os.access(path, os.R_OK):
        raise ImageReadError(path, "permission denied: make the file readable (chmod +r)")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes): re-export or re-download it")


def _check_size(path: Path, size: tuple[int, int], min_side: int, limit: int | None) -> None:
    w, h = size
    if min(w, h) < min_side:
        raise ImageReadError(path, f"too small ({w}x{h} px, the minimum side is {min_side} px): "
                                   "use a larger image of the face")
    if limit is not None and w * h > limit:
        raise ImageReadError(path, _too_large_reason((w, h), limit))


def _too_large_reason(size: tuple[int, int] | None, limit: int, pixels: int | None = None) -> str:
    dims = f"{size[0]}x{size[1]} = {size[0] * size[1]} px" if size else f"{pixels or 'over ' + str(2 * limit)} px"
    return (f"too large ({dims}; the decompression-bomb limit is {limit} px): if you trust the file, "
            "allow it with max_pixels=N (CLI: --max-pixels N), or downscale it first")


def _apply_orientation(im: Image.Image, notes: list[str]) -> Image.Image:
    orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        notes.append(f"EXIF orientation {orientation} applied")
        return ImageOps.exif_transpose(im)
    return im


def _to_rgb8(im: Image.Image, notes: list[str], rawmode: str) -> np.ndarray:
    """Convert any PIL mode to an HxWx3 uint8 RGB array, noting what was changed."""
    mode = im.mode
    if mode == "RGB":
        if rawmode.startswith("RGB;16"):
            # PIL already kept the high byte of each 16-bit sample: same as scaling by 255/65535.
            notes.append("16-bit RGB reduced to 8-bit")
        return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))
    if mode == "P":
        has_alpha = "transparency" in im.info or im.palette.mode == "RGBA"
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette image converted to RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _drop_alpha(im, notes)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _scale_to_8bit(np.asarray(im), mode, notes)
        notes.append("grayscale converted to RGB")
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode in ("1", "L"):
        notes.append("grayscale converted to RGB")
    else:  # CMYK, YCbCr, LAB, HSV, RGBX ...
        notes.append(f"{mode} converted to RGB")
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _drop_alpha(im: Image.Image, notes: list[str]) -> np.ndarray:
    """Composite on black (i.e. multiply by alpha): what lies under transparent pixels is
    undefined in most files, black at least makes it deterministic."""
    rgba = np.asarray(im.convert("RGBA"))
    alpha = rgba[:, :, 3:4]
    if alpha.min() == 255:
        notes.append("alpha channel dropped (image is fully opaque)")
        return np.ascontiguousarray(rgba[:, :, :3])
    notes.append("transparent pixels composited on black, alpha channel dropped")
    rgb = (rgba[:, :, :3].astype(np.uint32) * alpha + 127) // 255
    return rgb.astype(np.uint8)


def _scale_to_8bit(a: np.ndarray, mode: str, notes: list[str]) -> np.ndarray:
    a = a.astype(np.float64)
    if mode == "F":
        lo, hi = (0.0, 1.0) if a.min() >= 0 and a.max() <= 1 else (float(a.min()), float(a.max()))
        notes.append(f"32-bit float image scaled from [{lo:g}, {hi:g}] to 8-bit")
    elif a.min() >= 0 and a.max() <= 65535:
        lo, hi = 0.0, 65535.0
        notes.append("16-bit image scaled to 8-bit (x 255/65535)")
    else:
        lo, hi = float(a.min()), float(a.max())
        notes.append(f"32-bit integer image stretched from [{lo:g}, {hi:g}] to 8-bit")
    scaled = (a - lo) * (255.0 / max(hi - lo, 1e-12))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def write_image(path: str | os.PathLike, array: np.ndarray, quality: int = 95) -> Path:
    """Write an HxW or HxWx3 uint8 array as PNG or JPEG (by extension), atomically: the
    file appears complete or not at all. Parent folders are created."""
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FrsError(f"cannot write '{path}': use a .png, .jpg or .jpeg file name")
    array = np.asarray(array)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise FrsError(f"write_image needs an HxW or HxWx3 uint8 array, got {array.dtype} {array.shape}")
    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt == "JPEG" else {}
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format=fmt, **kwargs)
    return write_bytes_atomic(path, buf.getvalue())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a temp file beside `path`, then os.replace it into place, so that a
    crash never leaves a half-written file. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its files are mode 0600; open(..., "xb") honours the umask.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def scan_folder(root: str | os.PathLike, recursive: bool = True) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `root`, each sorted by relative path. Hidden files
    and folders (name starting with '.') are left out: they are temp files and OS clutter."""
    root = Path(root)
    if not root.is_dir():
        raise FrsError(f"'{root}' is not a folder: pass a folder of images"
                       if root.exists() else f"folder '{root}' does not exist: check the path")
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        # Relative names as strings: pathlib per file costs seconds on 20k+ files.
        prefix = os.path.relpath(dirpath, root).replace(os.sep, "/") + "/"
        prefix = "" if prefix == "./" else prefix
        for name in filenames:
            if name.startswith("."):
                continue
            is_image = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            (images if is_image else others).append((prefix + name, os.path.join(dirpath, name)))
    return [Path(p) for _, p in sorted(images)], [Path(p) for _, p in sorted(others)]


def list_images(root: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files (by extension, see IMAGE_EXTENSIONS) under `root`, sorted by relative path."""
    return scan_folder(root, recursive)[0]


def to_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an HxWxC image to a square, then resize it to size x size
    (area averaging when shrinking, bicubic when enlarging)."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = img[top: top + s, left: left + s]
    if s == size:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)
