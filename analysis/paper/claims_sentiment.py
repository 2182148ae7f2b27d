"""Claims 1, 2, 5, 7, 8 and 9, decided on the sentiment study's runs (see claims.toml for the words).

Seeds are the replicates: a number "over seeds" is computed once per seed (param train.seed)
and summarised by its mean and 95% Student-t interval. Comparisons between two methods pair
their runs by seed (the same seed fixes the data order and the evaluation samples' RNG).
"""

from __future__ import annotations

import math
import re

import pandas as pd

from analysis import stats
from analysis.compare import point_leads
from analysis.figures import overopt
from analysis.load import RunData
from analysis.paper.fronts import every_front_ahead, front_lead_table
from analysis.paper.verdicts import (
    HOLDS,
    NOT_REPRODUCED,
    REPRODUCED,
    Finding,
    above,
    ci_text,
    decide,
    not_measured,
    over_seeds,
)
from analysis.stats import holm, t_test
from harness.config.metrics import (
    DATA_TRAIN_ROWS,
    EVAL_GOLD_REWARD,
    TRAIN_COMPLETIONS,
    TRAIN_TOKENS,
    winrate,
)

DPO = "dpo"
FRONTIER_BASELINES = ("rloo", "rloo_gold")  # RLHF with a learned reward, with the gold reward
# Online against offline (Tang et al. 2024): online DPO against DPO on the same pairs' reward
# model; online DPO on the gold reward against RLOO on it.
ONLINE_PAIRS = (("online_dpo", "dpo"), ("online_dpo_gold", "rloo_gold"))
# Best-of-n against RL on the same gold reward (Gao et al. 2022).
BEST_OF_N_PAIRS = (("bon_gold", "rloo_gold"),)
TEMPERATURE_BASELINES = ("rloo", "rloo_gold", "sft")  # PPO's and Preferred-FT's stand-ins
WINRATE = winrate("gold", "reference")  # the headline: samples at temperature 1
PER_TEMPERATURE = re.compile(r"^metrics\.winrate/gold/vs_reference/t([0-9.eE+-]+)$")
KTO = "kto"
KTO_BETA = DPO_BETA = 0.1  # both papers' default strength
# KTO "matches" DPO if it trails by less than this much gold win rate (a non-inferiority margin).
KTO_MARGIN = 0.05


def frontier(data: RunData) -> Finding:
    """Claim 1: per seed, the gold-reward lead of DPO's front over each baseline's at matched
    KL, both fronts from the same number of runs (analysis.compare, the comparison protocol)."""
    per_seed = front_lead_table(data, [(DPO, baseline) for baseline in FRONTIER_BASELINES])
    per_seed = per_seed[["baseline", "seed", "lead"]]
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


def online_vs_offline(data: RunData) -> Finding:
    """Online beats offline at matched KL: per seed, the gold-reward lead of each online
    method's front over its counterpart's (ONLINE_PAIRS), as claim 1 measures DPO's lead."""
    return every_front_ahead(data, ONLINE_PAIRS)


def best_of_n_vs_rl(data: RunData) -> Finding:
    """Best-of-n needs less KL than RL for the same gold reward: per seed, the mean lead of
    bon_gold's points (one per n) over rloo_gold's training paths at the same KL
    (compare.point_leads: no running maximum, so RL's many evaluations gain nothing by chance).
    Best-of-n's eval/kl is the analytic bound, at least its true KL: the lead measured there
    understates best-of-n's."""
    return every_front_ahead(data, BEST_OF_N_PAIRS, point_leads)


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
    """Claim 5: DPO's gold win rate rises above 0.5 and then falls significantly within the
    data: some strength's win rate lies above the one at the largest d (paired by seed, Holm
    over the strengths compared). Gao et al.'s fits are reported, not decided on: a curve that
    only levels off fits d (alpha - beta d) with beta > 0 too."""
    points = overopt.final_points(data)
    if points is None or points.empty:
        return not_measured(f"no run logs both {WINRATE} and eval/kl")
    fits = overopt.fit_table(points)
    dpo = points[points["method"] == DPO]
    if dpo["beta"].nunique() < 2:
        return not_measured("fewer than two dpo strengths with a final win rate and KL")
    falls = _falls_to_largest_d(dpo)
    rise = t_test(dpo[dpo["beta"] == falls.attrs["peak"]]["winrate"], 0.5)
    rose = rise["ci_low"] > 0.5
    # a fall is some strength significantly above the largest d's; strengths below it (the
    # rising side, at small d) say nothing against one
    above = falls[(falls["p_holm"] < 0.05) & (falls["mean"] > 0)]
    fell = not above.empty
    if any(math.isnan(p) for p in falls["p"]) or math.isnan(rise["ci_low"]):
        verdict, why = decide({"one seed": None})
    else:
        verdict = REPRODUCED if rose and fell else NOT_REPRODUCED
        why = (
            f"At its peak (beta {falls.attrs['peak']:g}) DPO's win rate is {rise['mean']:.3f} "
            f"[{rise['ci_low']:.3f}, {rise['ci_high']:.3f}] ({'above' if rose else 'not clearly above'} "
            f"0.5); {_fall_sentence(falls, above)}"
        )
    measured = "DPO's fall to the largest d: " + "; ".join(
        f"beta {r['beta']:g} minus beta {falls.attrs['last']:g}: {r['mean']:+.3f} "
        f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        for _, r in falls.iterrows()
    )
    if len(fits) and DPO in set(fits["method"]):
        bon = fits[(fits["method"] == DPO) & (fits["form"] == "bon")].iloc[0]
        measured += f"; best-of-n fit alpha {_coef(bon, 'alpha')}, beta {_coef(bon, 'beta')}"
    table = pd.concat([fits, falls.assign(quantity="win rate minus the largest d's")])
    return Finding(verdict, why, measured, table.reset_index(drop=True))


def _fall_sentence(falls: pd.DataFrame, above: pd.DataFrame) -> str:
    last = f"the largest d (beta {falls.attrs['last']:g}, d = {falls.attrs['d_last']:.2f})"
    if falls.attrs["peak"] == falls.attrs["last"]:
        return f"the peak is at {last}: nothing falls within the data."
    top = (above if len(above) else falls).sort_values("mean").iloc[-1]
    return (
        f"beta {top['beta']:g} lies above {last} by {top['mean']:+.3f} [{top['ci_low']:+.3f}, "
        f"{top['ci_high']:+.3f}], p {top['p']:.3g} (Holm {top['p_holm']:.3g}): "
        + ("a significant fall." if len(above) else "no significant fall.")
    )


def _falls_to_largest_d(dpo: pd.DataFrame) -> pd.DataFrame:
    """Per strength other than the one with the largest mean d: its win rate minus that
    strength's, paired by seed (t_test fields), with Holm-adjusted p-values."""
    by_beta = dpo.groupby("beta")
    last = by_beta["sqrt_kl"].mean().idxmax()
    peak = by_beta["winrate"].mean().idxmax()
    at_last = dpo[dpo["beta"] == last].groupby("seed")["winrate"].mean()
    rows = []
    for beta, group in by_beta:
        if beta == last:
            continue
        own = group.groupby("seed")["winrate"].mean()
        seeds = sorted(set(own.index) & set(at_last.index))
        rows.append({"beta": beta, **t_test((own[seeds] - at_last[seeds]).to_numpy())})
    falls = pd.DataFrame(rows)
    falls["p_holm"] = holm(falls["p"].to_numpy())
    falls.attrs.update(peak=peak, last=last, d_last=by_beta["sqrt_kl"].mean()[last])
    return falls


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
    text = ci_text(head, signed=True)
    if within_margin is None:
        verdict, why = decide({"one seed": None})
    elif within_margin == HOLDS:  # non-inferiority shown: the claim's "matches or beats"
        verdict = REPRODUCED
        why = f"KTO trails DPO by less than the {KTO_MARGIN:g} margin (interval {text})."
    else:
        verdict = NOT_REPRODUCED
        lost = "is below DPO's" if head["ci_high"] < 0 else "is not shown to be within"
        why = (
            f"KTO's gold win rate {lost} the -{KTO_MARGIN:g} margin (interval {text}); "
            f"{stats.seeds_needed(head['sd'], KTO_MARGIN)} seeds would detect a "
            f"{KTO_MARGIN:g} difference at 80% power."
        )
    rows_used = _train_rows(kto, dpo)
    measured = "; ".join(
        f"KTO - DPO {r['metric']}: {ci_text(r, signed=True)}" for _, r in summary.iterrows()
    )
    return Finding(verdict, why, measured + rows_used, summary)


def _train_rows(kto: pd.DataFrame, dpo: pd.DataFrame) -> str:
    """The budgets: training pairs loaded, and completions and tokens the loss saw."""
    parts = []
    for key, what in (
        (DATA_TRAIN_ROWS, "training pairs"),
        (TRAIN_COMPLETIONS, "completions seen"),
        (TRAIN_TOKENS, "tokens seen"),
    ):
        column = f"metrics.{key}"
        if column in kto and column in dpo:
            parts.append(f"{what}: kto {kto[column].mean():g}, dpo {dpo[column].mean():g}")
    return f" ({'; '.join(parts)})" if parts else ""


def _common_seeds(table: pd.DataFrame, methods: list[str]) -> list[float]:
    seeds = [set(table.loc[table["method"] == m, "seed"].dropna()) for m in methods]
    return sorted(set.intersection(*seeds))
