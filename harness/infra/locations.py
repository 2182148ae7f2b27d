"""Where things are, without touching them: the default stores, the one tracking-URI resolver,
how to open the MLflow UI on a store, and a free local port. Light on purpose (no MLflow import): commands use it
before parsing arguments, and `harness --help` stays fast.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from harness.infra.databases import is_database_url, mask

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
DEFAULT_OPTUNA_STORAGE = "sqlite:///results/optuna.db"
UI_VIEW_ID = "harness"  # the saved runs view stores.use_tracking gives every experiment


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the project's SQLite store."""
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, None for any other kind of store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def runs_page_url(server_url: str, experiment_id: str) -> str:
    """The experiment's runs table with the harness's columns, at an MLflow server."""
    return (
        f"{server_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={UI_VIEW_ID}"
    )


def mlflow_ui_hint(uri: str, experiment_id: str | None = None) -> str:
    """How to open the MLflow UI on `uri` (at the experiment's runs), with this environment's
    mlflow: a server URI opens as it is; a database needs `mlflow ui` started first. Passwords
    are masked."""
    if uri.startswith(("http://", "https://")):
        page = runs_page_url(uri, experiment_id) if experiment_id else uri
        return f"open {mask(page)} in a browser (the MLflow server's UI)"
    if not is_database_url(uri):
        return f"the MLflow UI of {mask(uri)}"
    beside = Path(sys.executable).parent / "mlflow"
    mlflow_bin = str(beside) if beside.exists() else "mlflow"
    if mlflow_bin.startswith(os.getcwd()):
        mlflow_bin = os.path.relpath(mlflow_bin)
    command = f"{mlflow_bin} ui --backend-store-uri {mask(uri)}"
    if experiment_id is None:
        return command
    return f"{command}\n  then open {runs_page_url('http://127.0.0.1:5000', experiment_id)}"
