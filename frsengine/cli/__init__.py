"""The `frsengine` console command. Each sub-command lives in its own module here and
exposes `add_parser(subparsers)`; the parser's `run(args) -> int` does the work."""
from __future__ import annotations

import argparse
import importlib
import sys

from frsengine import __version__
from frsengine.errors import FrsError

# Module names under frsengine.cli; each adds one sub-command.
COMMANDS = ("degrade", "genotype", "priors", "search", "train", "eval", "bench", "restore", "build_engine")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frsengine",
        description="Blind face restoration with neural architecture search (FRSNet / MFPSNet).",
    )
    parser.add_argument("--version", action="version", version=f"frsengine {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"frsengine.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # KEY=VALUE overrides may come after options too (`search --config F --output D a.b=1`).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "accepts_overrides", False) and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except FrsError as exc:
        print(f"frsengine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"frsengine {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
