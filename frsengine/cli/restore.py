"""`frsengine restore`: restore face crops or whole photos from files, folders or globs.

Only argparse is imported at module level (see cli/degrade.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Restore image files: face crops (default; any size, resized to the model's size and back) or whole
photos (--whole-image: faces are detected, aligned, restored together and pasted back; faces below
--min-face px are left alone and reported). Each -i is a file, a folder (searched recursively) or a
glob ('photos/**/*.jpg', quoted). Outputs go to OUTDIR under the same relative names (PNG for
16-bit, alpha and formats other than PNG/JPEG); inputs are never overwritten. Decoding and encoding
run in worker threads. A file that cannot be read or written is reported and skipped."""

EPILOG = """\
the model: --model PACKAGE (a folder or .safetensors file made by frsengine.export.save_package),
or $FRSENGINE_MODEL. There is no built-in default model yet.
backends: auto (says which it picked), torch, compile (torch.compile), onnxruntime (CPU), tensorrt (GPU)
exit status: 0 when every file was restored, 1 when some (or all) failed, 2 on usage errors.
example: frsengine restore -i photos/ -o restored/ --whole-image --model models/frsnet --compare"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "restore", help="restore face crops or whole photos (files, folders, globs)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", dest="inputs", action="append", required=True, metavar="INPUT",
                   help="file, folder or glob (repeatable)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="folder to write to")
    p.add_argument("--model", metavar="PACKAGE", help="model package (default: $FRSENGINE_MODEL)")
    p.add_argument("--whole-image", action="store_true", help="inputs are photos: detect, align, paste back")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "compile", "onnxruntime", "tensorrt"))
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"),
                   help="default: fp16 on CUDA with auto, else fp32 (fp16 needs CUDA; bf16 CUDA or an AMX/AVX512-BF16 CPU)")
    p.add_argument("--batch-size", type=int, default=16, help="faces per model call (default: 16)")
    p.add_argument("--detector", choices=("hog", "cnn"), default="hog", help="dlib face detector (default: hog)")
    p.add_argument("--min-face", type=int, default=32, metavar="PX", help="leave smaller faces alone (default: 32)")
    p.add_argument("--compare", action="store_true", help="also write OUTDIR/compare/NAME.png: input | restored")
    p.add_argument("--workers", type=int, default=2, help="decoding threads (default: 2)")
    p.add_argument("--max-pixels", type=int, metavar="N", help="accept images up to N pixels (default: PIL's limit)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no notes (failures are still reported)")
    p.set_defaults(run=run)
    return p


def collect_inputs(patterns: list[str]) -> tuple[list[Path], list[Path | None], list[str]]:
    """Files, their root folders (None for files given directly or by glob) and the patterns that
    matched nothing."""
    import glob
    import os

    from frsengine.io import IMAGE_EXTENSIONS, list_images

    files, roots, empty = [], [], []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir():
            found, root = list_images(p), p
        elif p.exists() or not glob.has_magic(pattern):
            found, root = [p], None  # a missing file is reported by the reader
        else:
            found, root = sorted(Path(f) for f in glob.glob(pattern, recursive=True)
                                 if os.path.isfile(f) and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS), None
        if not found:
            empty.append(pattern)
        files += found
        roots += [root] * len(found)
    return files, roots, empty


def run(args: argparse.Namespace) -> int:
    import logging
    import time

    from tqdm import tqdm

    from frsengine.api import Restorer, output_names, restore_files
    from frsengine.errors import FrsError

    if args.batch_size < 1:
        raise FrsError("--batch-size must be at least 1")
    files, roots, empty = collect_inputs(args.inputs)
    for pattern in empty:
        print(f"frsengine restore: no image files in/matching '{pattern}'", file=sys.stderr)
    if not files:
        print("frsengine restore: nothing to restore", file=sys.stderr)
        return 1
    from frsengine.api import check_output_dir

    check_output_dir(args.output)  # fail before loading the model
    log = logging.getLogger("frsengine")  # "backend auto: using ..." and the like, not other libraries' logs
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    restorer = Restorer(args.model, backend=args.backend, device=args.device, precision=args.precision,
                        batch_size=args.batch_size, detector=args.detector, min_face=args.min_face)
    if not args.quiet:
        print(f"model: {restorer.package.describe()}", file=sys.stderr)
        print(f"backend: {restorer.backend.describe()}{' (auto)' if args.backend == 'auto' else ''}", file=sys.stderr)
    bar = tqdm(total=len(files), unit="img", disable=args.quiet, file=sys.stderr)

    def on_item(report) -> None:
        bar.update(1)
        if not report.ok:
            tqdm.write(f"skipped {report.name}: {report.error}", file=sys.stderr)
        elif not args.quiet:
            for message in report.skipped_faces + report.notes:
                tqdm.write(f"note {report.name}: {message}", file=sys.stderr)

    t0 = time.perf_counter()
    reports, _ = restore_files(files, restorer, output_dir=args.output, names=output_names(files, roots),
                               aligned=not args.whole_image, compare=args.compare, workers=args.workers,
                               max_pixels=args.max_pixels, on_item=on_item)
    bar.close()
    seconds = time.perf_counter() - t0
    ok = sum(r.ok for r in reports)
    faces = sum(r.faces for r in reports)
    print(f"restore: {ok} of {len(reports)} image(s) written to {args.output} ({faces} face(s)), "
          f"{len(reports) - ok} failed; {seconds:.1f} s, {len(reports) / max(seconds, 1e-9):.1f} img/s")
    return 0 if ok == len(reports) else 1
