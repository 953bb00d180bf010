"""`python -m frsengine.bench [options]`: the same as `frsengine bench [options]`."""
import argparse
import sys

from frsengine.cli import bench
from frsengine.errors import FrsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frsengine")
    bench.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.run(args) or 0)
    except FrsError as exc:
        print(f"frsengine bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("frsengine bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
