"""`frsengine eval`: compare models on a seeded synthetic LQ set (and real LQ faces); write tables
and comparison grids.

Only argparse is imported at module level (see cli/degrade.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Evaluate restoration models (and the LQ-input baseline) the way the paper's Tables 1-5 do.

--data DIR: the faces of DIR (centre-cropped, resized to --size) are degraded once into a fixed,
seeded LQ set per task (frsengine degrade's evaluation set, cached under --cache and reused while
DIR, --seed, --preset/--set and --size stay the same); every model restores every task's LQ
faces, scored against the HQ faces: PSNR, SSIM, MS-SSIM (RGB, or luma with --y-channel) and the
dlib identity distance. Tasks: full (Eq. 10), blur, noise, jpeg, sr (down-sampled, bicubic back).

--real DIR: real LQ faces, scored with NIQE (no reference) before and after each model.

Writes OUT/results.md (tables laid out like the paper's), OUT/results.json (every per-image
score, seed, preset, data, model hashes, versions), OUT/grid-TASK.png (LQ | each model | GT, like
Fig. 6) and OUT/grid-real.png (input | each model, like Fig. 8)."""

EPILOG = """\
models: package folders or .safetensors files (frsengine.export.save_package). MFPSNet packages
need their priors: --student STUDENT.safetensors --dictionary DICT.safetensors (frsengine priors
train / build); without them they are skipped and the reason is recorded.
NIQE model: --niqe-model FILE (load), --niqe-fit DIR (fit on DIR's clean faces, save to
--niqe-model or OUT/niqe-model.safetensors), or neither with --data (fitted on its HQ faces, cached).
exit status: 0 when every model was evaluated, 1 when the tables were written but a model was skipped
(MFPSNet without fitting priors), 2 on usage errors (missing folders, unreadable models).
example: frsengine eval --models models/frsnet models/frsnet-b --data faces-val/ --out eval/ --seed 0"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval", help="compare models on a seeded synthetic LQ set and real faces (tables + grids)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=[], metavar="PACKAGE", help="model packages to compare")
    p.add_argument("--names", nargs="+", metavar="NAME", help="row labels of the models (default: package names)")
    p.add_argument("--data", type=Path, metavar="DIR", help="folder of HQ faces for the synthetic LQ set")
    p.add_argument("--real", type=Path, metavar="DIR", help="folder of real LQ faces (NIQE, no reference)")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="DIR", help="folder for the tables and grids")
    p.add_argument("--tasks", default="full,blur,noise,jpeg,sr",
                   help="comma-separated tasks: full, blur, noise, jpeg, sr (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the LQ set (default: 0)")
    p.add_argument("--preset", default="paper", help="degradation preset: paper or reference (default: paper)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset value or range (repeatable), e.g. noise.sigma=5,10")
    p.add_argument("--size", type=int, default=128, help="face side in pixels (default: 128)")
    p.add_argument("--limit", type=int, metavar="N", help="use only the first N faces of --data (sorted by name)")
    p.add_argument("--cache", type=Path, metavar="DIR", help="where LQ sets are kept (default: OUT/cache)")
    p.add_argument("--degrade-backend", default="torch", choices=("torch", "opencv", "dali"),
                   help="backend that makes the LQ set (default: torch)")
    p.add_argument("--y-channel", action="store_true", help="score PSNR/SSIM/MS-SSIM on BT.601 luma instead of RGB")
    p.add_argument("--no-identity", action="store_true", help="leave out the dlib identity distance (faster)")
    p.add_argument("--student", type=Path, metavar="FILE", help="MFPSNet priors: student checkpoint")
    p.add_argument("--dictionary", type=Path, metavar="FILE", help="MFPSNet priors: component dictionary")
    p.add_argument("--niqe-model", type=Path, metavar="FILE", help="NIQE model to load (or to write with --niqe-fit)")
    p.add_argument("--niqe-fit", type=Path, metavar="DIR", help="fit NIQE on the clean faces of DIR")
    p.add_argument("--grid-faces", type=int, default=4, metavar="N", help="faces (rows) per grid; 0: no grids (default: 4)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "compile", "onnxruntime", "tensorrt"))
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"),
                   help="default: fp16 on CUDA with auto, else fp32")
    p.add_argument("--batch-size", type=int, default=16, help="faces per model call (default: 16)")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no notes (skips are still reported)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from frsengine.degrade import parse_override
    from frsengine.errors import FrsError
    from frsengine.eval import RESULTS_JSON, RESULTS_MD, evaluate

    if args.limit is not None and args.limit < 1:
        raise FrsError("--limit must be at least 1")
    if args.batch_size < 1:
        raise FrsError("--batch-size must be at least 1")
    if not args.models and args.data is None and args.real is None:
        raise FrsError("nothing to evaluate: pass --models and --data DIR and/or --real DIR")
    overrides = dict(parse_override(text) for text in args.overrides)

    def say(message: str) -> None:
        if args.quiet and not message.startswith("skipped"):
            return
        tqdm.write(message, file=sys.stderr)

    record = evaluate(
        args.models, args.out, args.data, tasks=args.tasks, seed=args.seed, preset=args.preset,
        overrides=overrides, size=args.size, degrade_backend=args.degrade_backend, limit=args.limit,
        cache_dir=args.cache, names=args.names, backend=args.backend, device=args.device,
        precision=args.precision, batch_size=args.batch_size, student=args.student, dictionary=args.dictionary,
        y_channel=args.y_channel, identity=not args.no_identity, real=args.real, niqe_model=args.niqe_model,
        niqe_fit=args.niqe_fit, grid_faces=args.grid_faces, progress=not args.quiet, say=say,
        options=_options(args))
    evaluated = [m["label"] for m in record["methods"] if m["kind"] == "model" and not m.get("skipped")]
    print(f"eval: {len(evaluated)} model(s) + LQ input"
          + (f" on {record['lq_set']['faces']} faces x {len(record['tasks'])} task(s)" if "lq_set" in record else "")
          + (f"; {record['real']['faces']} real faces" if "real" in record else ""))
    print(f"tables: {args.out / RESULTS_MD}, {args.out / RESULTS_JSON}")
    grids = list(record.get("grids", {}).values()) + ([record["real"]["grid"]] if record.get("real", {}).get("grid") else [])
    if grids:
        print("grids: " + ", ".join(str(args.out / g) for g in grids))
    skipped = [m["label"] for m in record["methods"] if m.get("skipped")]
    if skipped:
        print(f"frsengine eval: {len(skipped)} model(s) not evaluated: {', '.join(skipped)} (reasons above and in "
              f"{RESULTS_MD})", file=sys.stderr)
        return 1
    return 0


def _options(args: argparse.Namespace) -> dict:
    """The command's options, as results.json records them."""
    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    return {k: plain(v) for k, v in sorted(vars(args).items()) if k not in ("run", "command")}
