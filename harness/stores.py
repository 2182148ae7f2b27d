"""Where runs go: the one MLflow tracking-URI resolver, experiment set-up, run provenance.

No training code here: `analysis` resolves its store with the same functions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
DEFAULT_OPTUNA_STORAGE = "sqlite:///results/optuna.db"
POLICY_ARTIFACT = "policy"  # the trained policy's folder among a run's artifacts


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the project's SQLite store."""
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, None for any other kind of store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def use_tracking(uri: str, experiment_name: str) -> str:
    """Point MLflow at `uri` and `experiment_name` (created if needed); returns its id.

    With a SQLite store, artifacts go next to the database (results/artifacts/...) instead of
    MLflow's default ./mlruns in whatever folder the command ran from.
    """
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment_name)
    if found is None:
        location = None
        if db is not None:
            location = (db.resolve().parent / "artifacts" / experiment_name).as_uri()
        experiment_id = client.create_experiment(experiment_name, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def mlflow_ui_hint(uri: str) -> str:
    """The command that opens the MLflow UI on `uri`, using this environment's mlflow."""
    beside = Path(sys.executable).parent / "mlflow"
    mlflow_bin = str(beside) if beside.exists() else "mlflow"
    if mlflow_bin.startswith(os.getcwd()):
        mlflow_bin = os.path.relpath(mlflow_bin)
    return f"{mlflow_bin} ui --backend-store-uri {uri}"


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


def policy_artifact_path(run_id: str) -> Path:
    """Local path of a run's saved policy (downloaded if the store is remote)."""
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=POLICY_ARTIFACT))
