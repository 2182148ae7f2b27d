"""The comparison protocol (analysis.compare): Holm, the MDE and the t-test by hand; matched
fronts on simulated identical methods; `harness compare` on a real MLflow store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from numpy.testing import assert_allclose
from scipy import stats as scipy_stats

from analysis import stats
from analysis.compare import FRONT_LEAD, HIGHER, NOT_SHOWN
from harness.commands.cli import main
from harness.config.metrics import EVAL_GOLD_REWARD, EVAL_KL, TRAIN_COMPLETIONS

# Measured on paper-sentiment: the gold reward of 64 samples varies by about 0.03 between
# evaluations of one policy; runs evaluate 7 times (150 steps, every 25).
NOISE = 0.03
EVALUATIONS = 7


def test_holm_adjusted_p_values_by_hand():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> max so far 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005, np.nan])
    assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert_allclose(stats.holm([0.6, 0.5]), [1.0, 1.0])  # capped at 1, m = 2


def test_t_test_p_value_by_hand():
    # 1, 2, 3: t = 2 sqrt(3) / 1; df 2: P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2
    t = 2 * math.sqrt(3)
    out = stats.t_test([1.0, 2.0, 3.0])
    assert out["p"] == pytest.approx(1 - t / math.sqrt(t**2 + 2))
    assert out["sd"] == pytest.approx(1.0) and out["n"] == 3


def test_minimum_detectable_effect_tends_to_the_normal_formula():
    # (z_0.975 + z_0.8) sd / sqrt(n) = (1.959964 + 0.841621) / 100 at n = 10000, sd = 1
    assert stats.minimum_detectable_effect(1.0, 10_000) == pytest.approx(0.0280159, rel=1e-3)
    # small n: more than the t-approximation's lower bound (t_0.975 + t_0.8) sd / sqrt(n)
    lower = (scipy_stats.t.ppf(0.975, 2) + scipy_stats.t.ppf(0.8, 2)) / math.sqrt(3)
    assert stats.minimum_detectable_effect(1.0, 3) > lower * 0.95
    assert math.isnan(stats.minimum_detectable_effect(1.0, 1))


def test_a_true_effect_of_the_mde_is_detected_80_percent_of_the_time():
    rng = np.random.default_rng(0)
    n, sd = 5, 0.1
    effect = stats.minimum_detectable_effect(sd, n)
    hits = [stats.t_test(rng.normal(effect, sd, n))["p"] < 0.05 for _ in range(4000)]
    assert np.mean(hits) == pytest.approx(0.8, abs=0.02)
    assert stats.seeds_needed(sd, effect) == n


def method_runs(rng, n_runs: int, gain: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Runs of one method: KL grows to a run's end value (log-uniform over [0.5, 8]); reward
    saturates with KL, plus the measured evaluation noise; `gain` adds to every reward."""
    runs = []
    for end in np.exp(rng.uniform(np.log(0.5), np.log(8.0), n_runs)):
        kl = end * np.linspace(0, 1, EVALUATIONS) + rng.normal(0, 0.05, EVALUATIONS)
        reward = 0.6 * (1 - np.exp(-np.clip(kl, 0, None) / 2)) + gain
        runs.append((kl, reward + rng.normal(0, NOISE, EVALUATIONS)))
    return runs


def null_coverage(lead, simulations: int = 300, seeds: int = 3) -> float:
    """How often the interval over seeds of two identical methods' lead (5 runs against 3, as
    DPO against RLOO in paper-sentiment) contains 0."""
    rng = np.random.default_rng(21)
    covered = 0
    for _ in range(simulations):
        leads = [lead(method_runs(rng, 5), method_runs(rng, 3)) for _ in range(seeds)]
        out = stats.t_test(leads)
        covered += out["ci_low"] <= 0 <= out["ci_high"]
    return covered / simulations


def test_matched_fronts_give_identical_methods_no_lead():
    assert null_coverage(stats.matched_front_lead) >= 0.95


def test_unmatched_fronts_favour_the_side_with_more_runs():
    def pooled(a, b):
        return stats.front_advantage(*stats.pool_runs(a), *stats.pool_runs(b))

    assert null_coverage(pooled) < 0.93  # the protocol's test above can fail


def test_matched_lead_is_antisymmetric_and_sees_a_real_gain():
    rng = np.random.default_rng(3)
    a, b = method_runs(rng, 5, gain=0.1), method_runs(rng, 3)
    assert stats.matched_front_lead(a, b) == pytest.approx(-stats.matched_front_lead(b, a))
    assert stats.matched_front_lead(a, b) == pytest.approx(0.1, abs=0.04)


def log_study(uri: str, experiment: str) -> None:
    """dpo (2 betas), ipo (+0.3 reward at every KL), kto (dpo's law): 4 seeds, real MLflow."""
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(experiment)
    rng = np.random.default_rng(5)
    for method, gain, betas in (
        ("dpo", 0.0, (0.1, 1.0)),
        ("ipo", 0.3, (0.1,)),
        ("kto", 0.0, (0.1,)),
    ):
        for beta in betas:
            for seed in range(4):
                name = f"{method}-b{beta:g}-s{seed}"
                tags = {"method": method, "dataset": "sentiment"}
                run = client.create_run(experiment_id, run_name=name, tags=tags)
                for key, value in {"method": method, "beta": beta, "train.seed": seed}.items():
                    client.log_param(run.info.run_id, key, value)
                ((kl, reward),) = method_runs(rng, 1, gain)
                for step, (k, r) in enumerate(zip(kl, reward, strict=True)):
                    client.log_metric(run.info.run_id, EVAL_KL, k, step=step * 25)
                    client.log_metric(run.info.run_id, EVAL_GOLD_REWARD, r, step=step * 25)
                client.log_metric(run.info.run_id, TRAIN_COMPLETIONS, 32 * 150, step=150)
                client.set_terminated(run.info.run_id)


def test_harness_compare_on_a_real_store(tracking, tmp_path, capsys):
    log_study(tracking, "study")
    out = tmp_path / "compare"
    code = main(["compare", "--experiment", "study", "--tracking-uri", tracking, "--out", str(out)])
    assert code == 0
    table = pd.read_csv(out / "compare_study.csv").set_index(["method", "quantity"])
    assert set(table.index) == {
        (m, q) for m in ("ipo", "kto") for q in (FRONT_LEAD, f"final {EVAL_GOLD_REWARD}")
    }
    ipo = table.loc[("ipo", FRONT_LEAD)]
    assert ipo["result"] == HIGHER and ipo["n_seeds"] == 4 and ipo["paired"]
    assert ipo["mean"] == pytest.approx(0.3, abs=0.08)
    assert ipo["p_holm"] >= ipo["p"]
    kto = table.loc[("kto", FRONT_LEAD)]
    assert kto["result"] == NOT_SHOWN and kto["mde"] > 0
    assert table["runs"].to_dict()[("ipo", FRONT_LEAD)] == 4
    assert table["baseline_runs"].iloc[0] == 8 and table["completions"].iloc[0] == 4800
    text = (out / "compare_study.md").read_text()
    assert "MDE" in text and text in capsys.readouterr().out


def test_an_unknown_baseline_or_experiment_is_one_line_exit_2(tracking, tmp_path, capsys):
    log_study(tracking, "study")
    common = ["--tracking-uri", tracking, "--out", str(tmp_path)]
    assert main(["compare", "--experiment", "study", "--baseline", "simpo", *common]) == 2
    assert "baseline 'simpo' has no finished run" in capsys.readouterr().err
    assert main(["compare", "--experiment", "nope", *common]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err


def test_lead_over_paths_reads_each_covering_path_at_the_points_kl():
    # Paths r = kl on [0, 2] (given out of order) and r = 2 kl on [0, 1].
    paths = [
        (np.array([2.0, 0.0, 1.0]), np.array([2.0, 0.0, 1.0])),
        (np.array([0, 1.0]), np.array([0, 2.0])),
    ]
    # (0.5, 1.0): paths read 0.5 and 1.0, lead 1 - 0.75; (1.5, 2.0): only the first, 2 - 1.5;
    # (3.0, 9.0): no path reaches KL 3, left out.
    lead = stats.lead_over_paths([0.5, 1.5, 3.0], [1.0, 2.0, 9.0], paths)
    assert lead == pytest.approx((0.25 + 0.5) / 2)
    assert np.isnan(stats.lead_over_paths([5.0], [1.0], paths))


def test_points_on_the_paths_curve_get_no_lead_however_many_evaluations_the_paths_have():
    """Best-of-n's one point per n against RL's 7 evaluations per run, on one curve."""
    rng = np.random.default_rng(5)
    covered, simulations = 0, 300
    for _ in range(simulations):
        leads = []
        for _seed in range(3):
            kl = np.log([1, 2, 4, 8, 16]) - (np.array([1, 2, 4, 8, 16]) - 1) / [1, 2, 4, 8, 16]
            reward = 0.6 * (1 - np.exp(-kl / 2)) + rng.normal(0, NOISE, kl.size)
            leads.append(stats.lead_over_paths(kl, reward, method_runs(rng, 3)))
        out = stats.t_test(leads)
        covered += out["ci_low"] <= 0 <= out["ci_high"]
    assert covered / simulations >= 0.93
