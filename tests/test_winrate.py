"""Win rates and their bootstrap CIs on constructed cases with known answers; scoring settings."""

import re

import numpy as np
import pytest
import torch
from scipy import stats

from harness import Experiment
from harness.commands.evaluate import parse_temperatures
from harness.config.spec import SpecError
from harness.evaluate.winrate import (
    Contestants,
    SamplingPlan,
    WinRate,
    headline_temperature,
    metric_names,
    outcomes,
    wilson_interval,
    win_rate,
    win_rates,
)
from harness.methods.catalog import flat_params
from tests import tiny

MLFLOW_NAME = re.compile(r"^[/\w.\- ]*$")


def test_ties_count_half():
    torch.testing.assert_close(outcomes([2, 1, 1, 0], [1, 1, 2, 0]), np.array([1, 0.5, 0, 0.5]))


def test_win_rate_and_ci_known_answer():
    # 400 prompts: 240 wins, 80 ties, 80 losses -> (240 + 0.5 * 80) / 400 = 0.7.
    # Outcomes w in {1, 0.5, 0}: E[w^2] = (240 + 0.25 * 80) / 400 = 0.65, var = 0.65 - 0.49 =
    # 0.16, sd = 0.4, standard error = 0.4 / sqrt(400) = 0.02; the bootstrap's 95% interval of
    # the mean matches the normal one, 0.7 -+ 1.96 * 0.02 = (0.6608, 0.7392), to sampling noise.
    policy = [1.0] * 240 + [0.0] * 80 + [0.0] * 80
    baseline = [0.0] * 240 + [0.0] * 80 + [1.0] * 80
    result = win_rate(policy, baseline, seed=0)
    assert result.value == pytest.approx(0.7)
    assert result.ci_low == pytest.approx(0.7 - 1.96 * 0.02, abs=0.006)
    assert result.ci_high == pytest.approx(0.7 + 1.96 * 0.02, abs=0.006)


def test_unanimous_outcome_gets_a_wilson_interval_not_a_point():
    # 3 wins of 3: z = 1.96, z^2 = 3.8415; centre (1 + 3.8415/6) / (1 + 3.8415/3) = 0.7192,
    # half-width 1.96 sqrt(3.8415/36) / 2.2805 = 0.2808: [0.4385, 1.0]
    result = win_rate([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert result.value == 1.0 and result.ci_high == 1.0
    assert result.ci_low == pytest.approx(0.4385, abs=1e-4)
    # 64 ties, e.g. greedy decoding of a policy equal to its reference: centred on 0.5
    low, high = wilson_interval(0.5, 64)
    assert (low, high) == pytest.approx((0.3810, 0.6190), abs=1e-4)
    assert win_rate([1.0] * 64, [1.0] * 64) == WinRate(0.5, low, high)


def test_wilson_interval_matches_scipy_on_whole_counts():
    for wins, n in ((0, 10), (10, 10), (7, 20)):
        ci = stats.binomtest(wins, n).proportion_ci(method="wilson")
        assert wilson_interval(wins / n, n) == pytest.approx((ci.low, ci.high))


def test_a_policy_against_itself_is_even_with_an_honest_interval():
    """The reference scored against itself: independent samples, a 95% CI around 0.5 of
    positive width (one shared seed gave identical texts, 0.5 and [0.5, 0.5])."""
    tokenizer = tiny.word_tokenizer()
    model = tiny.tiny_model(tokenizer, seed=0)
    prompts = [row["prompt"] for row in tiny.pairs(64)]
    metrics, table = win_rates(
        Contestants(model, model, tokenizer),
        SamplingPlan(temperatures=(1.0,), max_new_tokens=8, seed=0),
        prompts=prompts,
        chosen={},
        judges={"length": lambda prompts, texts: [len(t) for t in texts]},
    )
    names = metric_names("length", "reference", None)
    value, low, high = (metrics[names[k]] for k in ("value", "ci_low", "ci_high"))
    assert low < 0.5 < high and high - low > 0.1, (value, low, high)
    assert table["policy_seed"][0] != table["reference_seed"][0]
    identical = sum(a == b for a, b in zip(table["policy"], table["reference"], strict=True))
    assert identical < len(prompts) / 2


def test_names_are_mlflow_valid_and_headline_is_temperature_one():
    names = metric_names("gold", "reference", 0.25)
    assert names == {
        "value": "winrate/gold/vs_reference/t0.25",
        "ci_low": "winrate/gold/vs_reference/t0.25_ci_low",
        "ci_high": "winrate/gold/vs_reference/t0.25_ci_high",
    }
    assert metric_names("rm", "chosen", None)["value"] == "winrate/rm/vs_chosen"
    assert all(MLFLOW_NAME.match(n) for n in names.values())
    assert headline_temperature((0.0, 0.5, 1.0, 1.5)) == 1.0
    assert headline_temperature((0.0, 0.25)) == 0.25


def test_scoring_settings_by_dotted_name():
    exp = Experiment(method="dpo", beta=0.1, dataset="sentiment")
    changed = exp.replace({"eval.temperatures": "0,0.5,1", "eval.tasks": "world,hellaswag"})
    assert changed.eval.temperatures == (0, 0.5, 1)
    assert changed.eval.tasks == ("world", "hellaswag")
    assert (
        Experiment.from_dict(
            changed.to_dict() | {"eval": {**changed.to_dict()["eval"], "temperatures": [0, 0.5, 1]}}
        )
        == changed
    )
    assert flat_params(changed)["eval.temperatures"] == (0, 0.5, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eval.temperatures": "0,-0.5"}, "eval.temperatures must all be >= 0"),
        ({"eval.judges": "rm,gld"}, "Did you mean 'gold'"),
        ({"eval.bench_limit": 0}, "eval.bench_limit"),
    ],
)
def test_bad_scoring_settings_name_the_field(change, message):
    with pytest.raises(SpecError, match=message):
        Experiment(method="dpo", beta=0.1, dataset="sentiment").replace(change)


def test_parse_temperatures():
    assert parse_temperatures("0, 0.5,1") == (0.0, 0.5, 1.0)
    for bad in ("-0.1,1", "hot", ""):
        with pytest.raises(SpecError, match="--temperatures"):
            parse_temperatures(bad)
