"""Trainer callbacks: training metrics into MLflow under the harness's names, and its evaluation.

transformers' own MLflowCallback is never used: with nested runs it ends the parent run when a
trainer is garbage collected, and it logs ~180 params under names of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlflow
from transformers import TrainerCallback

from harness import distributed
from harness.metrics import SUMMARY_KEYS, train_metric_name


class TrainingDiverged(RuntimeError):
    """The training loss or the policy's weights became NaN or infinite."""


class MetricsCallback(TrainerCallback):
    """Logs the trainer's metrics, renamed to the harness scheme, into the active MLflow run."""

    def __init__(self, method: str):
        self.method = method

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:  # every process sees the same, already reduced logs
            return
        logs = dict(logs or {})
        if SUMMARY_KEYS & logs.keys():  # the end-of-training summary repeats the last epoch
            logs.pop("epoch", None)
        metrics = {}
        for key, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[train_metric_name(self.method, key)] = float(value)
        if metrics:
            mlflow.log_metrics(metrics, step=state.global_step, synchronous=False)


class EvalCallback(TrainerCallback):
    """Runs `evaluate(policy, step)` every `every` steps; it returns True to stop training.

    Under several processes only the main one evaluates (the others' `evaluate` does nothing)
    and its decision is broadcast, so every process stops at the same step.
    """

    def __init__(self, evaluate: Callable[[object, int], bool], every: int):
        self.evaluate, self.every = evaluate, every

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        due = self.every and step % self.every == 0 and step < state.max_steps
        if due and distributed.main_decides(self.evaluate(model, step)):
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(
                f"training loss became non-finite ({loss}) at step {state.global_step}"
            )
