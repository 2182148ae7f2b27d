"""Trainer callbacks: training metrics into MLflow under the harness's names, and its evaluation.

transformers' own MLflowCallback is never used: with nested runs it ends the parent run when a
trainer is garbage collected, and it logs ~180 params under names of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlflow
from transformers import TrainerCallback

from harness.metrics import train_metric_name


class TrainingDiverged(RuntimeError):
    """The training loss or the policy's weights became NaN or infinite."""


class MetricsCallback(TrainerCallback):
    """Logs the trainer's metrics, renamed to the harness scheme, into the active MLflow run.

    Synchronously: MLflow's asynchronous queue, once used, makes the run's end wait up to a
    second per flush (it polls its queue once a second), about 1.1 s per run measured here,
    while a synchronous call every `train.log_every` steps costs some 10-25 ms (SQLite).
    """

    def __init__(self, method: str):
        self.method = method

    def on_log(self, args, state, control, logs=None, **kwargs):
        metrics = {}
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[train_metric_name(self.method, key)] = float(value)
        if metrics:
            mlflow.log_metrics(metrics, step=state.global_step, synchronous=True)


class EvalCallback(TrainerCallback):
    """Runs `evaluate(policy, step)` every `every` steps; it returns True to stop training."""

    def __init__(self, evaluate: Callable[[object, int], bool], every: int):
        self.evaluate, self.every = evaluate, every

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        due = self.every and step % self.every == 0 and step < state.max_steps
        if due and self.evaluate(model, step):
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(
                f"training loss became non-finite ({loss}) at step {state.global_step}"
            )
