"""`python -m analysis.paper`: regenerate results/paper/ from the store, training nothing."""

import argparse
import os
import sys
from pathlib import Path

from harness.infra.locations import resolve_tracking_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.paper", description=__doc__)
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/paper"),
        help="report folder (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Deferred: pandas, matplotlib and MLflow take seconds to import; `--help` should not.
    from analysis.paper.report import generate

    try:
        generate(resolve_tracking_uri(args.tracking_uri), args.out)
    except (ValueError, FileNotFoundError) as err:  # a broken claims file, a missing store
        print(f"analysis.paper: error: {err}", file=sys.stderr)
        return 2
    return 0


sys.exit(main())
