"""`harness compare`: every method of an experiment against a baseline, by analysis.compare."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.config.metrics import EVAL_GOLD_REWARD

DEFAULT_OUT = Path("results/compare")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)",
    )
    parser.add_argument("--experiment", required=True, help="the MLflow experiment to read")
    parser.add_argument(
        "--baseline", default="dpo", help="the method the others are compared with (%(default)s)"
    )
    parser.add_argument(
        "--metric",
        default=EVAL_GOLD_REWARD,
        help="the reward compared, at matched KL and at the end (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder for compare_<experiment>.csv and .md (default: {DEFAULT_OUT})",
    )


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Deferred: pandas and MLflow take seconds to import; `--help` should not.
    from analysis.compare import Protocol, compare, write
    from analysis.load import load_runs, open_for_reading

    uri = open_for_reading(args.tracking_uri)
    data = load_runs(uri, [args.experiment], extra_history=(args.metric,))
    table = compare(data, Protocol(baseline=args.baseline, metric=args.metric))
    paths = write(table, args.out, f"compare_{args.experiment}")
    print(paths[1].read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
