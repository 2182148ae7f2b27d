"""Metric names: one scheme, valid in MLflow, and the win-rate names analysis parses back."""

from __future__ import annotations

import re

import pytest

from harness.config import metrics

MLFLOW_VALID = re.compile(r"^[/\w.\- ]*$")


@pytest.mark.parametrize(
    ("judge", "baseline", "temperature"),
    [("gold", "reference", 0.25), ("rm", "chosen", None), ("gold", "reference", 1.0)],
)
def test_win_rate_names_round_trip_through_the_parser_analysis_uses(judge, baseline, temperature):
    name = metrics.winrate(judge, baseline, temperature)
    assert MLFLOW_VALID.match(name)
    assert metrics.parse_winrate(name) == (judge, baseline, temperature)
    assert metrics.parse_winrate(name + metrics.CI_LOW) is None  # a bound is not a win rate


def test_trainer_keys_map_into_the_scheme():
    assert metrics.train_metric_name("dpo", "loss") == metrics.TRAIN_LOSS
    assert metrics.train_metric_name("dpo", "rewards/margins") == "train/rewards/margins"
    assert metrics.train_metric_name("rloo", "rewards/gold/mean") == "train/rloo/rewards/gold/mean"
    assert metrics.train_metric_name("orpo", "log_odds_ratio") == "train/orpo/log_odds_ratio"
    assert metrics.train_metric_name("dpo", "train_runtime") == "train/summary/runtime"


def test_bench_names_are_cleaned_to_valid_mlflow_names():
    name = metrics.bench("task,x", "exact_match,strict-match")
    assert MLFLOW_VALID.match(name) and name == "bench/task_x/exact_match_strict-match"
