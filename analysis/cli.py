"""`harness figures` and `python -m analysis`: regenerate the paper's figures and tables."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_OUT = Path("results/figures")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)",
    )
    parser.add_argument(
        "--experiment",
        dest="experiments",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="MLflow experiment(s) to read (default: all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder for the figures and tables (default: {DEFAULT_OUT})",
    )


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per file
    # Deferred: pandas, matplotlib and MLflow take seconds to import; `--help` should not.
    from analysis.load import open_for_reading
    from analysis.report import generate

    uri = open_for_reading(args.tracking_uri)
    generate(uri, args.experiments, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as err:  # an unknown experiment, a missing store
        print(f"analysis: error: {err}", file=sys.stderr)
        return 2
