"""`python -m frsengine.bench [options]`: the same as `frsengine bench [options]`."""
import sys

from frsengine.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
