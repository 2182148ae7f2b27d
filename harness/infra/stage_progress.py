"""The progress line of a build stage that trains (a world's model, the reward model)."""

from __future__ import annotations

from transformers import TrainerCallback

from harness.infra.console import Progress


class StageProgress(TrainerCallback):
    """One progress line for a build stage that trains (a world's model, the reward model)."""

    def __init__(self, label: str):
        self.label = label
        self.loss = ""

    def on_train_begin(self, args, state, control, **kwargs):
        self.progress = Progress(self.label, state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if (logs or {}).get("loss") is not None:
            self.loss = f"loss {logs['loss']:.3f}"
        self.progress.update(state.global_step, self.loss)

    def on_train_end(self, args, state, control, **kwargs):
        self.progress.finish(self.loss)
