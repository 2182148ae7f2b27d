"""What several commands share: their tracking and override options, and quiet libraries."""

from __future__ import annotations

import argparse
import logging
import os
import warnings

from harness.config.spec import Experiment, parse_override
from harness.infra.console import verbose


def quiet_libraries() -> None:
    """The harness prints a line per stage; silence the libraries' per-call progress bars and
    notices, unless `--verbose` asked for them."""
    if verbose():
        return
    # Deferred: these libraries take seconds to import, and `--help` or a bad argument should not.
    import datasets
    import optuna
    import transformers

    os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's own bars (reference log-probs) read it
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Updating database tables" etc.
    # MLflow logs a database error with its traceback, then raises it as an MlflowException,
    # which the harness reports itself (one line, or the traceback of a bug). A Ctrl-C landing
    # inside a SQLite write printed that logged traceback above the "interrupted" line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # KTOTrainer's advice on desirable_weight for unbalanced labels: a notice, not an error.
    logging.getLogger("trl.trainer.kto_trainer").setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def add_tracking_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)",
    )


def add_override_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an experiment field by dotted name, e.g. train.steps=200",
    )


def apply_overrides(experiments: list[Experiment], overrides: list[str]) -> list[Experiment]:
    changes = dict(parse_override(o) for o in overrides)
    return [exp.replace(changes) for exp in experiments] if changes else experiments
