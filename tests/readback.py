"""Read a run back from MLflow the way a user of the UI would see it."""

import mlflow
from mlflow.tracking import MlflowClient


def metric_history(run_id: str) -> dict[str, list[tuple[int, float]]]:
    """{metric name: [(step, value), ...] sorted by step} for every metric of the run."""
    mlflow.flush_async_logging()
    client = MlflowClient()
    names = client.get_run(run_id).data.metrics
    return {
        name: sorted((m.step, m.value) for m in client.get_metric_history(run_id, name))
        for name in names
    }


def artifact_paths(run_id: str, path: str = "") -> set[str]:
    client = MlflowClient()
    out = set()
    for info in client.list_artifacts(run_id, path):
        out |= artifact_paths(run_id, info.path) if info.is_dir else {info.path}
    return out
