"""The paper report (analysis/paper) on stores whose numbers the tests control.

Runs are logged directly with MLflow under the harness's metric names (as tests/test_figures.py
does), so each claim's rule meets numbers with a known answer: a store where every claim holds,
and one where the RLHF baseline's front lies above DPO's. The interval over seeds is checked
against a hand-computed Student-t interval.
"""

from __future__ import annotations

import itertools
import math
import time

import mlflow
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from numpy.testing import assert_allclose

from analysis.paper import DETERMINISTIC, EXACT, SENTIMENT, SWEEP
from analysis.paper.report import FINDERS, generate, read_claims
from harness.config.metrics import (
    EVAL_FRONTIER_GAP,
    EVAL_GOLD_REWARD,
    EVAL_GOLD_REWARD_EXACT,
    EVAL_KL,
    EVAL_KL_EXACT,
    winrate,
)
from harness.infra.stores import use_tracking

pytestmark = pytest.mark.slow  # fills an MLflow store and draws every figure (~20 s)

SEEDS = (0, 1, 2)
TEMPERATURES = (0.0, 0.5, 1.0)
WINRATE = winrate("gold", "reference")
# KTO minus DPO gold win rate per seed: mean 0.05, s = sqrt(0.0013) = 0.0360555;
# t_{0.975, 2} = 4.302653, half-width = 4.302653 * 0.0360555 / sqrt(3) = 0.0895668.
KTO_LEAD = (0.02, 0.04, 0.09)
KTO_CI = (0.05, 0.05 - 0.0895668, 0.05 + 0.0895668)
SWEEP_NAME = f"{SWEEP}-abc123"
ONLINE_SCALE = 1.2


def log_run(method, beta, seed, dataset, steps, final, params=None, tags=None):
    """A FINISHED run opened as the harness opens one; steps: {step: {metric: value}}."""
    name = f"{method}-b{beta:g}-s{seed}"
    run_tags = {"method": method, "dataset": dataset, "experiment": name, **(tags or {})}
    with mlflow.start_run(run_name=name, tags=run_tags) as run:
        mlflow.log_params(
            {"method": method, "beta": beta, "dataset": dataset, "name": name, "train.seed": seed}
            | (params or {})
        )
        points = [*sorted(steps.items()), (max(steps, default=0), final)]
        now = int(time.time() * 1000)  # later points later, as logged one at a time: final wins
        # One batch per run: a store write per step made this fixture most of the file's time.
        metrics = [
            Metric(k, v, now + i, step)
            for i, (step, values) in enumerate(points)
            for k, v in values.items()
        ]
        MlflowClient().log_batch(run.info.run_id, metrics=metrics)


def sentiment_runs(baseline_scale: float) -> None:
    """DPO's path reaches reward sqrt(kl); rloo's and rloo_gold's baseline_scale * sqrt(kl);
    online DPO's (both rewards) ONLINE_SCALE * sqrt(kl), above DPO's and rloo_gold's;
    best-of-n's points (n = 1..16, at the KL bound) sqrt(kl)."""
    use_tracking(mlflow.get_tracking_uri(), SENTIMENT)
    betas = {"dpo": (0.03, 0.1, 0.3, 1.0), "rloo": (0.1, 1.0), "rloo_gold": (0.01, 0.1)}
    betas |= {"sft": (0.1,), "kto": (0.1,)}
    # each online method at its counterpart's betas: the same KLs, so the scales decide the lead
    betas |= {"online_dpo": betas["dpo"], "online_dpo_gold": betas["rloo_gold"]}
    for method, method_betas in betas.items():
        scale = 1.0 if method in ("dpo", "kto", "sft") else baseline_scale
        scale = ONLINE_SCALE if method.startswith("online") else scale
        for beta in method_betas:
            for seed in SEEDS:
                kl_end = 0.5 / beta * (1 + 0.05 * seed)
                steps = {
                    s: {
                        EVAL_KL: kl_end * s / 20,
                        EVAL_GOLD_REWARD: scale * math.sqrt(kl_end * s / 20),
                    }
                    for s in (0, 10, 20)
                }
                d = math.sqrt(kl_end)
                head = 0.5 + d * (0.3 - 0.1 * d) + 0.002 * seed  # Gao's best-of-n law, peak d=1.5
                if method == "kto":
                    head = dpo_headline(seed) + KTO_LEAD[seed]
                flat = method in ("dpo", "kto")
                final = {WINRATE: head, "data/train_rows": 256}
                for t in TEMPERATURES:
                    final[winrate("gold", "reference", t)] = head + (0 if flat else 0.2 * (1 - t))
                log_run(method, beta, seed, "sentiment", steps, final)
    for n, seed in itertools.product((1, 2, 4, 8, 16), SEEDS):  # one point each: nothing trains
        kl = math.log(n) - (n - 1) / n
        point = {0: {EVAL_KL: kl, EVAL_GOLD_REWARD: math.sqrt(kl) + 0.01 * seed}}
        log_run("bon_gold", n, seed, "sentiment", point, {}, {"method_args.n": n})


def dpo_headline(seed: int) -> float:
    d = math.sqrt(0.5 / 0.1 * (1 + 0.05 * seed))
    return 0.5 + d * (0.3 - 0.1 * d) + 0.002 * seed


def deterministic_runs() -> None:
    """DPO's exact KL grows linearly; IPO's levels off at 1 / tau."""
    use_tracking(mlflow.get_tracking_uri(), DETERMINISTIC)
    for method in ("dpo", "ipo"):
        for beta in (0.1, 0.3, 1.0):
            for seed in SEEDS:
                steps = {
                    s: {EVAL_KL_EXACT: exact_kl(method, beta, seed, s)} for s in range(0, 801, 100)
                }
                params = {"data.labels": "deterministic"}
                log_run(method, beta, seed, "exact", steps, {}, params)


def exact_kl(method, beta, seed, step):
    if method == "dpo":
        return (1 + 0.1 * seed) * step / 100
    return (1 + 0.01 * seed) / beta * (1 - math.exp(-step / 50))


def exact_runs(baseline_scale: float) -> None:
    """Gaps to the optimal frontier shrink from beta 0.1 to 1; exact paths: DPO's reaches
    baseline_scale * sqrt(kl), online DPO's ONLINE_SCALE * sqrt(kl) (claim 10)."""
    use_tracking(mlflow.get_tracking_uri(), EXACT)
    for method in ("dpo", "ipo", "online_dpo"):
        scale = ONLINE_SCALE if method == "online_dpo" else baseline_scale
        for beta, gap in ((0.1, 0.5), (1.0, 0.1)):
            for seed in SEEDS:
                kl_end = 0.5 / beta * (1 + 0.05 * seed)
                steps = {
                    s: {
                        EVAL_KL_EXACT: kl_end * s / 20,
                        EVAL_GOLD_REWARD_EXACT: scale * math.sqrt(kl_end * s / 20),
                    }
                    for s in (0, 10, 20)
                }
                final = {EVAL_FRONTIER_GAP: gap + 0.01 * seed}
                log_run(method, beta, seed, "exact", steps, final)


def sweep_runs() -> None:
    """Grid trials: every method's gold reward peaks at beta 0.1, far above the seed noise."""
    use_tracking(mlflow.get_tracking_uri(), SWEEP)
    storage = "sqlite:///no-such-optuna.db"  # no Optuna study: the claim needs MLflow only
    parent = {"role": "sweep_parent", "sweep": SWEEP_NAME, "optuna_storage": storage}
    with mlflow.start_run(run_name=SWEEP_NAME, tags=parent):
        pass
    for method in ("dpo", "ipo", "kto", "orpo"):
        for beta in (0.01, 0.1, 1.0):
            for seed in SEEDS:
                tags = {"role": "trial", "sweep": SWEEP_NAME, "trial_state": "COMPLETE"}
                value = (0.5 if beta == 0.1 else 0.1) + 0.01 * seed
                log_run(
                    method, beta, seed, "sentiment", {0: {}}, {EVAL_GOLD_REWARD: value}, tags=tags
                )


def build(folder, baseline_scale: float) -> str:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    sentiment_runs(baseline_scale)
    deterministic_runs()
    exact_runs(baseline_scale)
    sweep_runs()
    mlflow.flush_async_logging()
    return uri


def report_of_store(tmp_path_factory, name: str, baseline_scale: float):
    """(findings, report folder) of a store built with the baselines' rewards scaled."""
    folder = tmp_path_factory.mktemp(name)
    uri = build(folder, baseline_scale=baseline_scale)
    findings = generate(uri, folder / "paper", log=lambda line: None)
    return findings, folder / "paper"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return report_of_store(tmp_path_factory, "paper-good", baseline_scale=0.6)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return report_of_store(tmp_path_factory, "paper-bad", baseline_scale=1.5)


def report_rows(folder) -> list[list[str]]:
    lines = (folder / "REPORT.md").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| # | claim")))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def test_every_claim_has_a_row_with_its_figure_and_verdict(good):
    findings, folder = good
    rows = report_rows(folder)
    claims = read_claims()
    assert [r[1] for r in rows] == [c["title"] for c in claims]
    assert len(rows) == len(FINDERS) == 10
    verdicts = {c["key"]: findings[c["key"]].verdict for c in claims}
    assert verdicts == dict.fromkeys(verdicts, "reproduced"), {
        k: findings[k].why for k, v in verdicts.items() if v != "reproduced"
    }
    for row, claim in zip(rows, claims, strict=True):
        assert row[-1] == "**reproduced**"
        for stem in findings[claim["key"]].figures:
            assert (folder / f"{stem}.png").exists() and (folder / f"{stem}.pdf").exists()
            assert f"{stem}.png" in row[4]
    assert findings["frontier"].figures == ["frontier_paper-sentiment"]
    assert "sweep_paper-sweep_beta" in findings["beta_sensitivity"].figures


def test_a_claim_the_numbers_contradict_is_not_reproduced(bad):
    findings, folder = bad
    frontier = findings["frontier"]
    assert frontier.verdict == "not reproduced"
    assert "contradicted: dpo's front above rloo's" in frontier.why.lower()
    row = report_rows(folder)[0]
    assert row[-1] == "**not reproduced**"
    # DPO's reward is sqrt(kl), the baselines' 1.5 sqrt(kl): the lead is -0.5 x mean sqrt(kl)
    lead = frontier.table.set_index("baseline")
    assert (lead["ci_high"] < 0).all()
    # online DPO on the gold reward at 1.2 sqrt(kl) below rloo_gold's 1.5, above DPO's 1.0
    online = findings["online_vs_offline"]
    assert online.verdict == "not reproduced"
    assert "contradicted: online_dpo_gold's front above rloo_gold's" in online.why.lower()
    assert "holds: online_dpo's front above dpo's" in online.why.lower()
    # exact world: online DPO at 1.2 sqrt(exact kl) below DPO's 1.5
    exact = findings["online_vs_offline_exact"]
    assert exact.verdict == "not reproduced"
    assert "contradicted: online_dpo's front above dpo's" in exact.why.lower()


def test_the_interval_over_seeds_is_the_student_t_interval(good):
    findings, folder = good
    table = pd.read_csv(folder / "claim_kto_unpaired.csv").set_index("metric")
    row = table.loc[WINRATE]
    assert row["n"] == 3
    assert_allclose(
        [row["mean"], row["ci_low"], row["ci_high"]], KTO_CI, atol=1e-6
    )  # CSV: 6 digits
    assert "+0.050 [-0.040, +0.140]" in findings["kto_unpaired"].measured


def test_claim_numbers_follow_the_logged_laws(good):
    findings, _ = good
    fit = findings["overoptimization"].table.set_index(["method", "form"])
    # The winrates follow 0.5 + d (0.3 - 0.1 d) up to 0.002 * seed: the fit recovers the law
    assert fit.loc[("dpo", "bon"), "alpha"] == pytest.approx(0.3, abs=0.01)
    assert fit.loc[("dpo", "bon"), "beta"] == pytest.approx(0.1, abs=0.005)
    gaps = findings["frontier_gap"].table
    shrink = gaps[gaps["quantity"].str.startswith("gap shrink")].set_index("method")
    assert_allclose(shrink["mean"], [0.4, 0.4, 0.4])  # dpo, ipo, online_dpo
    best = findings["beta_sensitivity"].table
    assert set(best.loc[best.groupby("method")["mean"].idxmax(), "beta"]) == {0.1}


def test_report_states_the_time_and_the_study_sizes(good):
    _, folder = good
    text = (folder / "REPORT.md").read_text()
    # 30 + 18 online + 15 best-of-n sentiment + 18 deterministic + 18 exact runs + 36 sweep
    # trial runs (the parent is not a run)
    assert text.splitlines()[2].startswith("**Time:** 135 finished runs")
    assert "| paper-deterministic | 18 | dpo, ipo | 3 |" in text
