"""One MLflow run, written through its store's client by run id.

Below the commands nothing uses MLflow's process-wide "active run": every stage of a run
writes to the `TrackedRun` it was handed, so two runs (a sweep's parent and its trial, or a
test's) never write into each other, and a stage that is not given a run (the processes other
than the main one) writes nowhere.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags

from harness.infra.signals import interrupts_deferred

DEFAULT_EXPERIMENT_ID = "0"  # MLflow's "Default" experiment, where mlflow.start_run would log


def current_experiment_id() -> str:
    """The experiment the owning command chose (`stores.use_tracking` sets MLflow's documented
    MLFLOW_EXPERIMENT_ID), else MLflow's Default one."""
    return MLFLOW_EXPERIMENT_ID.get() or DEFAULT_EXPERIMENT_ID


def _whole(write: Callable) -> Callable:
    """A write that Ctrl-C cannot cut in the middle (it is delivered right after)."""

    @functools.wraps(write)
    def whole(*args, **kwargs):
        with interrupts_deferred():
            return write(*args, **kwargs)

    return whole


@dataclass(frozen=True)
class TrackedRun:
    client: MlflowClient
    run_id: str

    @classmethod
    def create(
        cls, client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str]
    ) -> TrackedRun:
        """A new RUNNING run with `tags` and the source tags mlflow.start_run would add (user,
        entry point), so the UI's columns read as for any MLflow run."""
        run = client.create_run(experiment_id, run_name=name, tags=resolve_tags(tags))
        return cls(client, run.info.run_id)

    @_whole
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_metric(self, key: str, value: float, step: int) -> None:
        self.log_metrics({key: value}, step)

    @_whole
    def log_params(self, params: dict[str, str]) -> None:
        batch = [Param(key, str(value)) for key, value in params.items()]
        self.client.log_batch(self.run_id, params=batch)

    @_whole
    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @_whole
    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    @_whole
    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    @_whole
    def log_table(self, table: dict[str, list[Any]], artifact_file: str) -> None:
        self.client.log_table(self.run_id, table, artifact_file)

    @_whole
    def log_artifacts(self, folder: str, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, folder, artifact_path)

    @_whole
    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)
