"""Trainer callbacks: training metrics into MLflow under the harness's names, and its evaluation.

transformers' own MLflowCallback is never used: with nested runs it ends the parent run when a
trainer is garbage collected, and it logs ~180 params under names of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from transformers import TrainerCallback

from harness.config.errors import RunFailed
from harness.config.metrics import SUMMARY_KEYS, TRAIN_COMPLETIONS, train_metric_name
from harness.infra import distributed
from harness.infra.tracked import TrackedRun


class TrainingDiverged(RunFailed):
    """The training loss, the gradient norm or the policy's weights became NaN or infinite."""


class MetricsCallback(TrainerCallback):
    """Logs the trainer's metrics, renamed to the harness scheme, into the MLflow run `tracked`
    (None: a process without a run of its own logs nothing).

    Synchronously: MLflow's asynchronous queue, once used, makes the run's end wait up to a
    second per flush (it polls its queue once a second), about 1.1 s per run measured here,
    while a synchronous call every `train.log_every` steps costs some 10-25 ms (SQLite).
    """

    def __init__(self, method: str, tracked: TrackedRun | None):
        self.method = method
        self.tracked = tracked
        self.completions_per_step = None  # set when training starts, from the data's columns
        # Sequences the loss sees per training row; None: 2 for pair rows, else 1. A builder
        # sets it where the columns do not say (online DPO trains a sampled pair per prompt).
        self.sequences_per_row: int | None = None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        columns = getattr(getattr(train_dataloader, "dataset", None), "column_names", None) or ()
        per_row = self.sequences_per_row or (2 if {"chosen", "rejected"} <= set(columns) else 1)
        rows = args.per_device_train_batch_size * args.gradient_accumulation_steps
        self.completions_per_step = rows * args.world_size * per_row

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.tracked is None:  # not the main process: its logs are the same, already reduced
            return
        logs = dict(logs or {})
        summary = bool(SUMMARY_KEYS & logs.keys())
        if summary:  # the end-of-training summary repeats the last epoch
            logs.pop("epoch", None)
        metrics = {}
        if self.completions_per_step is not None and not summary:
            metrics[TRAIN_COMPLETIONS] = float(state.global_step * self.completions_per_step)
        for key, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[train_metric_name(self.method, key)] = float(value)
        if metrics:
            self.tracked.log_metrics(metrics, step=state.global_step)


class EvalCallback(TrainerCallback):
    """Runs `evaluate(policy, step)` every `every` steps; it returns True to stop training.

    Under several processes only the main one evaluates (the others' `evaluate` does nothing)
    and its decision is broadcast, so every process stops at the same step.
    """

    def __init__(
        self,
        evaluate: Callable[[object, int], bool],
        every: int,
        on_loss: Callable[[float], None] = lambda loss: None,
    ):
        self.evaluate, self.every, self.on_loss = evaluate, every, on_loss

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        due = self.every and step % self.every == 0 and step < state.max_steps
        if due and distributed.main_decides(self.evaluate(model, step)):
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and math.isfinite(loss):  # DivergenceGuard handles the others
            self.on_loss(loss)


# A training loss this many times its first value (or 1, if larger) has diverged: measured on
# the sentiment world, sft at train.lr=1e3 logs 1e8 from a first loss of ~3.5, while a DPO-
# family loss starts at ln 2 and a sound run never leaves the same order of magnitude.
LOSS_GROWTH = 100


class DivergenceGuard(TrainerCallback):
    """Stops training at the step where the gradients (so the loss) become NaN or infinite,
    before the optimizer writes them into the weights, naming what diverged; or at the first
    logged loss over LOSS_GROWTH times the first one (the trainer logs step 1, the loss at
    the starting weights: `logging_first_step`), which stays finite while it explodes.

    transformers calls `on_pre_optimizer_step` after computing (and clipping) the gradients of
    every step: one fused norm over them costs little next to the step. The logged loss and
    grad_norm are checked too (TrainingArguments.logging_nan_inf_filter must be off, or the
    Trainer replaces a NaN loss by the running mean).
    """

    def __init__(self, lr: float):
        self.lr = lr
        self.first_loss: tuple[int, float] | None = None  # (step, loss) first logged

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        norms = torch.stack(torch._foreach_norm(grads))
        if not torch.isfinite(norms).all():
            first = next(
                name
                for (name, p), norm in zip(_with_grads(model), norms.tolist(), strict=True)
                if not math.isfinite(norm)
            )
            raise self._diverged(
                "the gradient norm", norms.sum().item(), state.global_step + 1, first
            )

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise self._diverged(f"the training {key}", value, state.global_step)
        loss = (logs or {}).get("loss")
        if isinstance(loss, (int, float)):
            self._check_growth(loss, state.global_step)

    def _check_growth(self, loss: float, step: int) -> None:
        if self.first_loss is None:
            self.first_loss = (step, loss)
            return
        first_step, first = self.first_loss
        if loss > LOSS_GROWTH * max(abs(first), 1.0):
            raise TrainingDiverged(
                f"training diverged at step {step}: the training loss grew to {loss:.4g}, over "
                f"{LOSS_GROWTH}x its value at step {first_step} ({first:.4g}); lower train.lr "
                f"({self.lr:g})"
            )

    def _diverged(
        self, what: str, value: float, step: int, parameter: str | None = None
    ) -> TrainingDiverged:
        where = f", first in the gradient of {parameter}" if parameter else ""
        return TrainingDiverged(
            f"training diverged at step {step}: {what} became non-finite ({value}{where}); "
            f"lower train.lr ({self.lr:g})"
        )


def _with_grads(model):
    return [(name, p) for name, p in model.named_parameters() if p.grad is not None]
