"""`frsengine build-engine`: ONNX export (dynamic batch, BN folded), onnxruntime check, TensorRT engine.

Only argparse is imported at module level (see cli/degrade.py).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

DESCRIPTION = """\
Export a derived FRSNet to ONNX with a dynamic batch axis (Conv-BN folded), check it against
torch with onnxruntime (the max abs error is printed; above --tolerance the command fails), then
build a TensorRT engine with one optimisation profile over the batch axis (min/opt/max).

Engines are cached in $FRSENGINE_CACHE/engines (default ~/.cache/frsengine), keyed by the
genotype hash, weights hash, precision, batch range, input size, GPU and TensorRT version; a
cached engine is copied to --out instead of being rebuilt. TensorRT needs an NVIDIA GPU and the
'tensorrt' wheel; without them, --onnx-only still exports and checks the ONNX file."""

EPILOG = """\
exit status: 0 on success, 1 when the ONNX check fails, 2 on usage errors (missing TensorRT included).
examples:
  frsengine build-engine --model models/frsnet --precision fp16 --min-batch 1 --opt-batch 16 --max-batch 32 --out frsnet.engine
  frsengine build-engine --genotype configs/genotypes/frsnet-seed0.json --weights w.safetensors --onnx-only --out frsnet.onnx"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "build-engine", help="export ONNX and build a TensorRT engine from a model package or genotype+weights",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, metavar="M", help="model package (folder or .safetensors file)")
    src.add_argument("--genotype", type=Path, metavar="G", help="genotype JSON (with --weights)")
    p.add_argument("--weights", type=Path, metavar="W", help="safetensors state dict of the genotype's network")
    p.add_argument("--preset", default="default", help="channel preset of --genotype/--weights (default: default)")
    p.add_argument("--size", type=int, default=128, help="input size of --genotype/--weights (default: 128)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp16", help="engine precision (default: fp16)")
    p.add_argument("--min-batch", type=int, default=1)
    p.add_argument("--opt-batch", type=int, default=16)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="engine file (the ONNX file with --onnx-only)")
    p.add_argument("--onnx", type=Path, metavar="FILE", help="also keep the ONNX file here")
    p.add_argument("--onnx-only", action="store_true", help="export and check the ONNX file; no TensorRT")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs error allowed in the check (default: 1e-4)")
    p.add_argument("--workspace-gib", type=float, default=4.0, help="TensorRT builder workspace (default: 4)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    import tempfile

    from frsengine.errors import FrsError
    from frsengine.export.onnx import check_onnx, export_onnx
    from frsengine.export.package import load_package, package_from_files

    if args.genotype is not None and args.weights is None:
        raise FrsError("--genotype needs --weights (a safetensors state dict); or pass --model PACKAGE")
    if args.weights is not None and args.genotype is None:
        raise FrsError("--weights needs --genotype")
    if not 1 <= args.min_batch <= args.opt_batch <= args.max_batch:
        raise FrsError(f"need 1 <= --min-batch ({args.min_batch}) <= --opt-batch ({args.opt_batch}) "
                       f"<= --max-batch ({args.max_batch})")
    if not args.onnx_only:  # fail before the slow export when TensorRT cannot run here
        from frsengine.export.tensorrt import current_gpu, import_tensorrt

        import_tensorrt()
        current_gpu()
    package = (load_package(args.model) if args.model is not None
               else package_from_files(args.genotype, args.weights, args.preset, args.size))
    print(f"model: {package.describe()}")
    model = package.build()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.out if args.onnx_only else (args.onnx or Path(tmp) / "model.onnx")
        export_onnx(model, onnx_path, package.input_size)
        check = check_onnx(onnx_path, model, package.input_size,
                           batch_sizes=tuple(sorted({args.min_batch, min(args.opt_batch, 4)})))
        print(f"onnx: {onnx_path} (dynamic batch, BN folded); {check}")
        if check.max_abs_error > args.tolerance:
            print(f"frsengine build-engine: ONNX output differs from torch by {check.max_abs_error:.2e} "
                  f"> --tolerance {args.tolerance:g}", file=sys.stderr)
            return 1
        if args.onnx_only:
            return 0
        if args.onnx is not None and args.onnx != onnx_path:
            shutil.copyfile(onnx_path, args.onnx)
        from frsengine.export.tensorrt import build_engine, engine_key, engine_path

        key = engine_key(package, args.precision, args.min_batch, args.opt_batch, args.max_batch)
        cached = engine_path(key)
        if cached.is_file():
            print(f"engine: cached {cached} (key {key.digest()})")
        else:
            build_engine(onnx_path, cached, key, workspace_gib=args.workspace_gib)
            print(f"engine: built {cached} (key {key.digest()})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, args.out)
    print(f"engine: {args.out} ({key.precision}, batch {key.min_batch}/{key.opt_batch}/{key.max_batch}, "
          f"{key.gpu}, TensorRT {key.tensorrt})")
    return 0
