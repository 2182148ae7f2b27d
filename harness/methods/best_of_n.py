"""What picks best-of-n's answer: a reward over (prompt, completion) texts, built per run.

Best-of-n trains nothing (harness.evaluate.best_of_n samples it); its registry entries name one
of these builders, `(data, model_source, seed, tracked) -> picker`, in place of a trainer
builder (`tracked`: the run to log the picker's own measures into, None for nowhere).
"""

from __future__ import annotations

from collections.abc import Callable

from harness.config.metrics import RM_ACCURACY
from harness.data.preference import PreferenceData
from harness.infra.tracked import TrackedRun
from harness.methods.reward_model import reward_model_for

Picker = Callable[[list[str], list[str]], list[float]]  # (prompts, continuations) -> rewards
PickerBuilder = Callable[[PreferenceData, str, int, TrackedRun | None], Picker]


def gold_picker(
    data: PreferenceData, model_source: str, seed: int, tracked: TrackedRun | None
) -> Picker:
    """The world's gold reward (a dataset without one is refused before: Method.needs_gold)."""
    return data.gold


def learned_picker(
    data: PreferenceData, model_source: str, seed: int, tracked: TrackedRun | None
) -> Picker:
    """A reward model trained on the experiment's pairs, as `rloo`'s (trainers.learned_reward):
    the experiment's model as backbone, the training seed; its held-out pair accuracy is
    logged as `rm/accuracy`."""
    model = reward_model_for(data, backbone=model_source, seed=seed)
    if tracked is not None:
        tracked.log_metric(RM_ACCURACY, model.accuracy, step=0)
    return model.score
