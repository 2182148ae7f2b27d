"""`harness` command line: run experiments, sweep them, score them, draw their figures."""

from __future__ import annotations

import argparse
import os
import sys

from harness.commands import COMMANDS
from harness.console import VERBOSE_ENV


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' own output (progress bars, notices, warnings)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # sweep workers inherit it
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # SpecError, DataError, ...: user input
        print(f"harness: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
