"""MLflow: where runs go, how they are named, and the callback that logs training metrics.

Metric names follow one scheme for every method (DESIGN.md): `{stage}/{family}/{name}`.
Training metrics are logged by `MetricsCallback` into the active run; transformers' own
MLflowCallback is never used (with nested runs it ends the parent when garbage collected).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from transformers import TrainerCallback

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"

# TRL log keys with a fixed place in the scheme; any other key becomes train/{method}/{key}.
TRAIN_NAMES = {
    "loss": "train/loss",
    "grad_norm": "train/optim/grad_norm",
    "learning_rate": "train/optim/lr",
    "epoch": "train/progress/epoch",
    "num_tokens": "train/progress/num_tokens",
}
SHARED_FAMILIES = ("rewards/", "logps/", "logits/")
# End-of-training summaries from transformers.Trainer, kept once under train/summary/.
SUMMARY_KEYS = {
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
    "train_loss",
}
_INVALID = re.compile(r"[^\w./\- ]")


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the project's SQLite store."""
    uri = cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return uri


def use_tracking(uri: str, experiment_name: str) -> str:
    """Point MLflow at `uri` and `experiment_name` (created if needed); returns its id.

    With a SQLite store, artifacts go next to the database (results/artifacts/...) instead of
    MLflow's default ./mlruns in whatever folder the command ran from.
    """
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment_name)
    if found is None:
        location = None
        if uri.startswith("sqlite:///"):
            db = Path(uri.removeprefix("sqlite:///")).resolve()
            location = (db.parent / "artifacts" / experiment_name).as_uri()
        experiment_id = client.create_experiment(experiment_name, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def train_metric_name(method: str, key: str) -> str:
    if key in TRAIN_NAMES:
        return TRAIN_NAMES[key]
    # rewards/chosen is shared; RLOO's per-reward-function rewards/{name}/mean is its own
    if key.startswith(SHARED_FAMILIES) and key.count("/") == 1:
        return f"train/{key}"
    if key in SUMMARY_KEYS:
        return f"train/summary/{key.removeprefix('train_')}"
    return f"train/{method}/{_INVALID.sub('_', key)}"


def param_value(value: Any) -> str:
    return "None" if value is None else str(value)


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class MetricsCallback(TrainerCallback):
    """Logs the trainer's metrics, renamed to the harness scheme, into the active MLflow run."""

    def __init__(self, method: str):
        self.method = method

    def on_log(self, args, state, control, logs=None, **kwargs):
        metrics = {}
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[train_metric_name(self.method, key)] = float(value)
        if metrics:
            mlflow.log_metrics(metrics, step=state.global_step, synchronous=False)
