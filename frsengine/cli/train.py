"""`frsengine train`: retrain a searched architecture from scratch (Algorithm 1, lines 8-11)."""
from __future__ import annotations

from pathlib import Path

from frsengine.cli.search import add_common, config_of, overrides_of


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="retrain a genotype from scratch (writes checkpoints and a model package)",
        description="Retrain the derived FRSNet / MFPSNet of a genotype; validation PSNR/SSIM every epoch, "
                    "best and last checkpoints, the best model as a package for `frsengine restore`. "
                    "Data parallel under torchrun.")
    p.add_argument("--genotype", type=Path, metavar="FILE", help="genotype JSON (same as model.genotype=FILE)")
    add_common(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from frsengine.train import retrain

    items = overrides_of(args)
    if args.genotype:
        items.append(f"model.genotype={args.genotype}")
    cfg = config_of(args, items, "train")
    summary = retrain(cfg, args.resume)
    return 0 if summary["status"] == "done" else 130
