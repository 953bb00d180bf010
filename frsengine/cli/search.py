"""`frsengine search`: architecture search from a config file (Algorithm 1, lines 1-7)."""
from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "search", help="search an FRSNet / MFPSNet architecture (writes a genotype)",
        description="Alternate weight steps on D_A and first-order alpha/beta steps on D_B; decode the "
                    "genotype at every checkpoint. Data parallel under torchrun "
                    "(torchrun --nproc-per-node N -m frsengine.cli search ...).")
    add_common(p)
    p.set_defaults(run=run)


def add_common(p) -> None:
    p.add_argument("--config", type=Path, metavar="FILE", help="YAML run config (configs/search/*.yaml, configs/train/*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. schedule.epochs=3 data.limit=200 output.dir=runs/x")
    p.add_argument("--resume", metavar="RUN", help="continue a run: its folder or a checkpoint file (its config is "
                   "used unless --config is given)")
    p.add_argument("--output", metavar="DIR", help="run folder (same as output.dir=DIR)")
    p.add_argument("--device", help="cpu, cuda or auto (same as device=...)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log only)")
    p.set_defaults(accepts_overrides=True)


def overrides_of(args) -> list[str]:
    items = list(args.overrides)
    if args.output:
        items.append(f"output.dir={args.output}")
    if args.device:
        items.append(f"device={args.device}")
    if args.no_progress:
        items.append("output.progress=false")
    return items


def config_of(args, items: list[str], kind: str):
    """The run config: --config FILE, else (when resuming) the checkpoint's own config; then overrides."""
    from frsengine.train import load_config

    base = None
    if args.resume and args.config is None:
        from frsengine.train.checkpoint import load_checkpoint

        path = Path(args.resume)
        base = load_checkpoint(path / "checkpoints" / "last.safetensors" if path.is_dir() else path).config
    return load_config(args.config, items, kind=kind, base=base)


def run(args) -> int:
    from frsengine.train import search

    cfg = config_of(args, overrides_of(args), "search")
    summary = search(cfg, args.resume)
    return 0 if summary["status"] == "done" else 130
