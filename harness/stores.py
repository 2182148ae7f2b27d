"""Where runs go: the one MLflow tracking-URI resolver, experiment set-up, run provenance, and
how the MLflow UI opens an experiment.

No training code here: `analysis` resolves its store with the same functions.

MLflow 3.17's UI picks an experiment's page from a browser-wide "GenAI | Model training" switch
(`?workflowType=` in the URL, else the browser's localStorage, default GenAI), not from the
`mlflow.experimentKind` tag; the runs table's columns come from a saved view, an experiment tag
`mlflow.sharedViewState.{id}` opened with `?viewStateShareKey={id}`. Both were read from the UI
bundled with mlflow (mlflow/server/js) and checked in headless Chromium (`make screenshots`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

from harness.metrics import EVAL_GOLD_REWARD, EVAL_KL, EVAL_PAIR_ACCURACY

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
DEFAULT_OPTUNA_STORAGE = "sqlite:///results/optuna.db"
POLICY_ARTIFACT = "policy"  # the trained policy's folder among a run's artifacts
POLICY_MODEL_TAG = "policy_model"  # the run's policy as an MLflow model URI (models:/m-...)
UI_VIEW_ID = "harness"
# The runs table's columns in the harness's saved view: what tells methods apart, side by side.
UI_COLUMNS = (
    "params.`method`",
    "params.`beta`",
    "attributes.`Dataset`",
    f"metrics.`{EVAL_GOLD_REWARD}`",
    f"metrics.`{EVAL_KL}`",
    f"metrics.`{EVAL_PAIR_ACCURACY}`",
    "attributes.`Models`",
)


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
    import mlflow  # deferred here and below: mlflow takes seconds to import, `--help` none

    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment_name)
    if found is None:
        location = None
        if db is not None:
            location = (db.resolve().parent / "artifacts" / experiment_name).as_uri()
        experiment_id = client.create_experiment(experiment_name, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    for key, value in ui_tags().items():
        if found is None or found.tags.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def ui_tags() -> dict[str, str]:
    """Experiment tags: a model-training experiment with the harness's saved runs view."""
    state = {
        "selectedColumns": list(UI_COLUMNS),
        "columnOrder": list(UI_COLUMNS),
        "chartsSearchFilter": "eval/",  # the charts view: the yardstick, every method alike
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    }
    view = {"name": "harness: compare runs", "createdAt": 0, "updatedAt": 0}
    return {
        "mlflow.experimentKind": "custom_model_development",
        f"mlflow.sharedViewState.{UI_VIEW_ID}": json.dumps(view | {"state": json.dumps(state)}),
    }


def runs_page_url(server_url: str, experiment_id: str) -> str:
    """The experiment's runs table with the harness's columns, at an MLflow server."""
    return (
        f"{server_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={UI_VIEW_ID}"
    )


def mlflow_ui_hint(uri: str, experiment_id: str | None = None) -> str:
    """How to open the MLflow UI on `uri` (at the experiment's runs), with this environment's
    mlflow: a server URI opens as it is; a database needs `mlflow ui` started first."""
    if uri.startswith(("http://", "https://")):
        return runs_page_url(uri, experiment_id) if experiment_id else uri
    beside = Path(sys.executable).parent / "mlflow"
    mlflow_bin = str(beside) if beside.exists() else "mlflow"
    if mlflow_bin.startswith(os.getcwd()):
        mlflow_bin = os.path.relpath(mlflow_bin)
    command = f"{mlflow_bin} ui --backend-store-uri {uri}"
    if experiment_id is None:
        return command
    return f"{command}\n  then open {runs_page_url('http://127.0.0.1:5000', experiment_id)}"


def param_value(value: Any) -> str:
    """MLflow params are strings: strings stay as they are, anything else is JSON
    (`null`, `true`, `0.1`, `["rm", "gold"]`), so tools can parse them back."""
    return value if isinstance(value, str) else json.dumps(value)


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
    """Local path of a run's policy saved as plain files (runs logged before the policy became
    an MLflow model; downloaded if the store is remote)."""
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=POLICY_ARTIFACT))


def log_dataset_inputs(name: str, source: str, splits: dict[str, list[dict]], *, hub: bool) -> None:
    """Each split as a dataset input of the active run (the runs table's Dataset column and its
    filters): `name`, a digest of the rows, where they came from, and the row count."""
    import mlflow
    import pandas as pd
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

    inputs, contexts, tags = [], [], []
    for split, rows in splits.items():
        if not rows:
            continue
        origin = HuggingFaceDatasetSource(source, split=split) if hub else Path(source).as_uri()
        with warnings.catch_warnings():  # MLflow has two equal resolvers for local paths
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
            inputs.append(mlflow.data.from_pandas(pd.DataFrame(rows), source=origin, name=name))
        contexts.append(split)
        tags.append({"rows": str(len(rows))})
    mlflow.log_inputs(datasets=inputs, contexts=contexts, tags_list=tags)


def model_requirements() -> list[str]:
    """pip requirements of a logged policy: the installed transformers and torch (MLflow's own
    inference would import torchvision, which the harness does not need)."""
    return [f"{p}=={version(p).split('+')[0]}" for p in ("transformers", "torch")]
