"""Budgets in MLflow: every run logs the completions and tokens its loss saw, cumulatively.

A DPO row is a pair (two completions), a KTO row one: at the same batch size DPO sees twice
KTO's completions per step, which is why paper-sentiment gives KTO twice DPO's batch.
"""

from __future__ import annotations

import pytest

from harness import EvalSpec, Experiment, TrainSpec
from harness.config.metrics import TRAIN_COMPLETIONS, TRAIN_TOKENS
from harness.infra.stores import use_tracking
from harness.run.recipe import run_experiment
from tests.readback import metric_history

pytestmark = pytest.mark.slow  # trains two tiny models (~10 s)


@pytest.mark.parametrize(("method", "batch", "per_step"), [("dpo", 4, 8), ("kto", 8, 8)])
def test_runs_log_completions_and_tokens_seen(tracking, method, batch, per_step):
    use_tracking(tracking, "budget")
    exp = Experiment(
        method=method,
        beta=0.1,
        dataset="sentiment",
        train=TrainSpec(steps=3, batch_size=batch, eval_every=0, log_every=1, save_policy=False),
        eval=EvalSpec(n_prompts=4, max_new_tokens=4),
    )
    result = run_experiment(exp, log=lambda _: None)
    history = metric_history(result.run_id)
    assert history[TRAIN_COMPLETIONS] == [(s, float(s * per_step)) for s in (1, 2, 3)]
    tokens = [value for _, value in history[TRAIN_TOKENS]]
    assert tokens == sorted(tokens) and tokens[0] > per_step  # cumulative, several per sequence
