"""`frsengine degrade`: write a fixed, reproducible evaluation set of degraded faces.

Only argparse is imported at module level: `frsengine --help` builds every sub-command's
parser, and importing torch would make that take seconds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Degrade every face image of a folder (any size or format; centre-cropped and resized to
SIZE x SIZE) and write an evaluation set:

  OUTPUT/hq/NAME.png      the HQ face
  OUTPUT/full/NAME.png    full degradation (Eq. 10)
  OUTPUT/blur/ noise/ jpeg/ downup/NAME.png   single degradations (unless --no-singles)
  OUTPUT/params.json      settings and every face's parameters

The same --seed gives the same files, byte for byte. An interrupted run resumes where it
stopped when re-run with the same arguments. Unreadable files are reported by name and
skipped; converted files (grayscale, alpha, 16-bit, CMYK, EXIF-rotated) are noted."""

EPILOG = """\
presets (ranges: see frsengine/degrade/presets.py; change any with --set):
  paper      Eq. 10 order blur -> down -> noise -> JPEG -> resize back: Gaussian blur
             sigma 0.2-5, down-scale r 1-8 (bicubic, antialiased), Gaussian noise
             sigma 0-15, JPEG quality 40-90
  reference  the authors' degrade.py: Gaussian sigma 3-8 or motion blur 10-20 px ->
             Gaussian/Laplace 20-40 or Poisson noise -> JPEG quality 15-50 -> x0.5 cubic
             down -> cubic back up

backends:
  torch      batched tensors on CPU or CUDA (--device); JPEG by its own DCT codec
  opencv     one image at a time with a real JPEG encoder: the faithful baseline
  dali       NVIDIA DALI pipeline, GPU when there is one (needs nvidia-dali)

--set examples: noise.sigma=5,10  jpeg.quality=30  blur.gaussian_p=1  down.scale=4
                noise.kinds=gaussian:0.5,poisson:0.5  order=blur,noise,down,jpeg

exit status: 0 when at least one face was written, 1 when none could be, 2 on usage errors.
example: frsengine degrade --input faces/ --output evalset/ --seed 0 --preview grid.png"""

PREVIEW_FACES = 8


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "degrade", help="write degraded LQ faces and their parameters (an evaluation set)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input", required=True, type=Path, metavar="DIR", help="folder of face images (searched recursively)")
    p.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder to write the evaluation set to")
    p.add_argument("--preset", default="paper", help="degradation preset: paper or reference (default: paper)")
    p.add_argument("--backend", default="torch", choices=("torch", "opencv", "dali"), help="default: torch")
    p.add_argument("--seed", type=int, default=0, help="base seed of the per-face parameters (default: 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value or range (repeatable), e.g. noise.sigma=5,10")
    p.add_argument("--size", type=int, default=128, help="HQ side in pixels (default: 128)")
    p.add_argument("--no-singles", action="store_true", help="write only the full degradation")
    p.add_argument("--batch-size", type=int, default=32, help="faces per batch (default: 32)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="device of the torch/dali backend (default: torch on the CPU, dali on the GPU when there is one)")
    p.add_argument("--list", dest="list_file", type=Path, metavar="FILE",
                   help="text file of image names relative to --input (one per line) to use instead of the whole folder")
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N files (sorted by name)")
    p.add_argument("--min-side", type=int, default=16, metavar="PX", help="skip images with a smaller side (default: 16)")
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help="accept images up to N pixels (default: PIL's decompression-bomb limit, ~89 Mpx)")
    p.add_argument("--preview", type=Path, metavar="PNG",
                   help=f"also write a grid of the first {PREVIEW_FACES} faces: HQ | full | singles")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no notes (skipped files are still reported)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from frsengine.data.evalset import build_eval_set
    from frsengine.degrade import parse_override
    from frsengine.errors import FrsError

    overrides = dict(parse_override(text) for text in args.overrides)
    if args.limit is not None and args.limit < 1:
        raise FrsError("--limit must be at least 1")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise FrsError("--device cuda: no CUDA device is visible to torch here; use --device cpu")

    def report(message: str) -> None:
        if args.quiet and message.startswith("note "):
            return
        tqdm.write(message, file=sys.stderr)  # keeps the progress bar intact

    summary = build_eval_set(
        args.input, args.output, args.preset, args.backend, args.seed, size=args.size,
        singles=not args.no_singles, list_file=args.list_file, batch_size=args.batch_size,
        device=args.device, progress=not args.quiet, overrides=overrides, limit=args.limit,
        min_side=args.min_side, max_pixels=args.max_pixels, report=report,
    )
    if summary.ignored:
        shown = ", ".join(summary.ignored[:5]) + (", ..." if len(summary.ignored) > 5 else "")
        print(f"ignored {len(summary.ignored)} file(s) without an image extension: {shown}", file=sys.stderr)
    if summary.total == 0:
        print(f"frsengine degrade: no image files in '{args.input}'", file=sys.stderr)
        return 1
    rate = summary.written / summary.seconds if summary.seconds > 0 else 0.0
    print(f"degrade: {summary.ok} of {summary.total} faces in {args.output} "
          f"({summary.written} written, {summary.resumed} already there), {len(summary.skipped)} skipped, "
          f"{len(summary.notes)} note(s); {summary.seconds:.1f} s, {rate:.1f} faces/s")
    if not summary.ok:
        print("frsengine degrade: no face could be processed (see the messages above)", file=sys.stderr)
        return 1
    print(f"parameters: {summary.params_path}")
    if args.preview is not None:
        print(f"preview: {write_preview(args.preview, args.output, summary.names[:PREVIEW_FACES], not args.no_singles)}")
    return 0


def write_preview(path: Path, output_dir: Path, names: list[str], singles: bool) -> Path:
    """A grid of the given faces of an evaluation set: HQ | full | singles, with a header."""
    from frsengine.data.evalset import output_dirs
    from frsengine.io import read_image, save_grid

    dirs = output_dirs(singles)
    rows = [[read_image(output_dir / d / name, min_side=1)[0] for d in dirs] for name in names]
    return save_grid(path, rows, ["HQ" if d == "hq" else d for d in dirs])
