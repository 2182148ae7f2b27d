"""Claims 1, 2, 5 and 7, decided on the sentiment study's runs (see claims.toml for the words).

Seeds are the replicates: a number "over seeds" is computed once per seed (param train.seed)
and summarised by its mean and 95% Student-t interval. Comparisons between two methods pair
their runs by seed (the same seed fixes the data order and the evaluation samples' RNG).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from analysis.figures import overopt
from analysis.load import RunData
from analysis.paper.verdicts import (
    HOLDS,
    NOT_REPRODUCED,
    PARTLY,
    REPRODUCED,
    Finding,
    above,
    ci_text,
    decide,
    not_measured,
    over_seeds,
)
from analysis.stats import front_advantage
from harness.config.metrics import DATA_TRAIN_ROWS, EVAL_GOLD_REWARD, EVAL_KL, winrate

DPO = "dpo"
FRONTIER_BASELINES = ("rloo", "rloo_gold")  # RLHF with a learned reward, with the gold reward
TEMPERATURE_BASELINES = ("rloo", "rloo_gold", "sft")  # PPO's and Preferred-FT's stand-ins
WINRATE = winrate("gold", "reference")  # the headline: samples at temperature 1
PER_TEMPERATURE = re.compile(r"^metrics\.winrate/gold/vs_reference/t([0-9.eE+-]+)$")
KTO = "kto"
KTO_BETA = DPO_BETA = 0.1  # both papers' default strength
# KTO "matches" DPO if it trails by less than this much gold win rate (a non-inferiority margin).
KTO_MARGIN = 0.05


def frontier(data: RunData) -> Finding:
    """Claim 1: per seed, the mean gold-reward lead of DPO's front over each baseline's."""
    points = data.curves([EVAL_KL, EVAL_GOLD_REWARD]).dropna(subset=[EVAL_KL, EVAL_GOLD_REWARD])
    rows = []
    for baseline in FRONTIER_BASELINES:
        for seed in _common_seeds(points, [DPO, baseline]):
            a = points[(points["method"] == DPO) & (points["seed"] == seed)]
            b = points[(points["method"] == baseline) & (points["seed"] == seed)]
            lead = front_advantage(a[EVAL_KL], a[EVAL_GOLD_REWARD], b[EVAL_KL], b[EVAL_GOLD_REWARD])
            rows.append({"baseline": baseline, "seed": seed, "lead": lead})
    per_seed = pd.DataFrame(rows, columns=["baseline", "seed", "lead"])
    if per_seed.empty:
        return not_measured(f"no seed with both {DPO} and a baseline logging eval/kl, gold reward")
    summary = over_seeds(per_seed, ["baseline"], "lead")
    checks = {
        f"DPO's front above {r['baseline']}'s ({ci_text(r, signed=True)})": above(r)
        for _, r in summary.iterrows()
    }
    verdict, why = decide(checks)
    measured = "; ".join(
        f"lead over {r['baseline']}: {ci_text(r, signed=True)}" for _, r in summary.iterrows()
    )
    return Finding(verdict, why, measured, summary.assign(quantity="front lead (gold reward)"))


def temperature(data: RunData) -> Finding:
    """Claim 2: per seed, how much each method's gold win rate moves across temperatures."""
    swings = _temperature_swings(data.runs)
    if swings.empty or DPO not in set(swings["method"]):
        return not_measured("no dpo run logs winrate/gold/vs_reference/t{T} at two temperatures")
    by_method = over_seeds(swings, ["method", "beta"], "swing")
    rows = []
    for baseline in TEMPERATURE_BASELINES:
        for seed in _common_seeds(swings, [DPO, baseline]):
            own = swings.loc[(swings["method"] == DPO) & (swings["seed"] == seed), "swing"]
            other = swings.loc[(swings["method"] == baseline) & (swings["seed"] == seed), "swing"]
            rows.append({"baseline": baseline, "seed": seed, "excess": other.iat[0] - own.iat[0]})
    excess = over_seeds(
        pd.DataFrame(rows, columns=["baseline", "seed", "excess"]), ["baseline"], "excess"
    )
    if excess.empty:
        return not_measured("no baseline run with win rates at two temperatures")
    checks = {
        f"{r['baseline']} swings more than DPO ({ci_text(r, signed=True)})": above(r)
        for _, r in excess.iterrows()
    }
    verdict, why = decide(checks)
    measured = "; ".join(f"{r['method']} {ci_text(r)}" for _, r in by_method.iterrows())
    table = pd.concat(
        [
            by_method.assign(quantity="win-rate swing over temperatures"),
            excess.assign(quantity="swing minus DPO's"),
        ],
        ignore_index=True,
    )
    return Finding(verdict, why, "swing (max - min over T): " + measured, table)


def _temperature_swings(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: max - min of its gold win rate over temperatures, at the method's best beta."""
    columns = [c for c in runs.columns if PER_TEMPERATURE.match(c)]
    if len(columns) < 2:
        return pd.DataFrame(columns=["method", "beta", "seed", "swing"])
    best = _best_beta(runs)
    chosen = runs[[best.get(m) == b for m, b in zip(runs["method"], runs["beta"], strict=True)]]
    values = chosen[columns]
    return pd.DataFrame(
        {
            "method": chosen["method"],
            "beta": chosen["beta"],
            "seed": chosen["seed"],
            "swing": values.max(axis=1) - values.min(axis=1),
        }
    ).dropna(subset=["swing"])


def _best_beta(runs: pd.DataFrame) -> dict[str, float]:
    """Each method's beta with the highest mean headline gold win rate (as papers pick theirs)."""
    column = f"metrics.{WINRATE}"
    if column not in runs:
        return {}
    means = runs.dropna(subset=[column]).groupby(["method", "beta"])[column].mean().reset_index()
    best = means.loc[means.groupby("method")[column].idxmax()]
    return dict(zip(best["method"], best["beta"], strict=True))


def overoptimization(data: RunData) -> Finding:
    """Claim 5: Gao et al.'s best-of-n form fitted to DPO's (sqrt KL, gold win rate) points."""
    points = overopt.final_points(data)
    if points is None or points.empty:
        return not_measured(f"no run logs both {WINRATE} and eval/kl")
    fits = overopt.fit_table(points)
    if fits.empty or DPO not in set(fits["method"]):
        return not_measured(f"fewer than {overopt.MIN_POINTS} distinct KLs among the dpo runs")
    bon = fits[(fits["method"] == DPO) & (fits["form"] == "bon")].iloc[0]
    d_max = points.loc[points["method"] == DPO, "sqrt_kl"].max()
    peak = bon["alpha"] / (2 * bon["beta"]) if bon["beta"] > 0 else np.inf
    curved = bon["beta_ci_low"] > 0 and bon["alpha_ci_low"] > 0
    inside = peak <= d_max
    if curved and inside:
        verdict = REPRODUCED
    elif bon["beta"] > 0 and bon["alpha"] > 0:
        verdict = PARTLY
    else:
        verdict = NOT_REPRODUCED
    why = (
        f"DPO's best-of-n fit has beta {_coef(bon, 'beta')} "
        f"({'above 0' if curved else 'not clearly above 0'}) and its peak at d = {peak:.2f} lies "
        f"{'inside' if inside else 'beyond'} the measured range (d <= {d_max:.2f})."
    )
    rl = fits[(fits["method"] == DPO) & (fits["form"] == "rl")].iloc[0]
    measured = (
        f"DPO, best-of-n form: alpha {_coef(bon, 'alpha')}, beta {_coef(bon, 'beta')}, peak d = "
        f"{peak:.2f}; RL form: alpha {_coef(rl, 'alpha')}, beta {_coef(rl, 'beta')} "
        f"({int(bon['n'])} runs; 95% fit intervals; other methods in the table)"
    )
    return Finding(verdict, why, measured, fits)


def _coef(row, name: str) -> str:
    return f"{row[name]:.3f} [{row[name + '_ci_low']:.3f}, {row[name + '_ci_high']:.3f}]"


def kto_unpaired(data: RunData) -> Finding:
    """Claim 7: per seed, KTO's gold win rate (and gold reward) minus DPO's, at beta 0.1 each."""
    runs = data.runs
    kto = runs[(runs["method"] == KTO) & (runs["beta"] == KTO_BETA)]
    dpo = runs[(runs["method"] == DPO) & (runs["beta"] == DPO_BETA)]
    rows = []
    for key in (WINRATE, EVAL_GOLD_REWARD):
        column = f"metrics.{key}"
        if column not in runs:
            continue
        for seed in sorted(set(kto["seed"]) & set(dpo["seed"])):
            diff = (
                kto.loc[kto["seed"] == seed, column].iat[0]
                - dpo.loc[dpo["seed"] == seed, column].iat[0]
            )
            rows.append({"metric": key, "seed": seed, "kto_minus_dpo": diff})
    diffs = pd.DataFrame(rows, columns=["metric", "seed", "kto_minus_dpo"]).dropna()
    if WINRATE not in set(diffs["metric"]):
        return not_measured(f"no seed with both kto and dpo at beta {DPO_BETA:g} logging {WINRATE}")
    summary = over_seeds(diffs, ["metric"], "kto_minus_dpo")
    head = summary[summary["metric"] == WINRATE].iloc[0]
    within_margin = above(head, -KTO_MARGIN)
    if within_margin is None:
        verdict, why = decide({"one seed": None})
    elif within_margin == HOLDS:
        verdict = REPRODUCED
        why = f"KTO trails DPO by less than the {KTO_MARGIN:g} margin (interval {ci_text(head, signed=True)})."
    elif head["ci_high"] < 0:
        verdict = NOT_REPRODUCED
        why = f"KTO's gold win rate is below DPO's (interval {ci_text(head, signed=True)} excludes 0)."
    else:
        verdict = PARTLY
        why = f"Inconclusive: the interval {ci_text(head, signed=True)} reaches below the -{KTO_MARGIN:g} margin but includes 0."
    rows_used = _train_rows(kto, dpo)
    measured = "; ".join(
        f"KTO - DPO {r['metric']}: {ci_text(r, signed=True)}" for _, r in summary.iterrows()
    )
    return Finding(verdict, why, measured + rows_used, summary)


def _train_rows(kto: pd.DataFrame, dpo: pd.DataFrame) -> str:
    """The data each was given (`data/train_rows`: the training pairs as loaded)."""
    column = f"metrics.{DATA_TRAIN_ROWS}"
    if column not in kto or column not in dpo:
        return ""
    return f" (training pairs: kto {kto[column].iat[0]:g}, dpo {dpo[column].iat[0]:g})"


def _common_seeds(table: pd.DataFrame, methods: list[str]) -> list[float]:
    seeds = [set(table.loc[table["method"] == m, "seed"].dropna()) for m in methods]
    return sorted(set.intersection(*seeds))
