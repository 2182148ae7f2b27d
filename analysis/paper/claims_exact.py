"""Claims 3, 4 and 10, decided on the exact world's studies: exact KL and the optimal frontier.

Every number is a final (or mid-training) value of one run, summarised over seeds by its mean
and 95% Student-t interval (analysis.paper.verdicts.over_seeds).
"""

from __future__ import annotations

import pandas as pd

from analysis.load import RunData
from analysis.paper.fronts import every_front_ahead
from analysis.paper.verdicts import (
    Finding,
    above,
    below,
    ci_text,
    decide,
    not_measured,
    over_seeds,
)
from harness.config.metrics import EVAL_FRONTIER_GAP, EVAL_GOLD_REWARD_EXACT, EVAL_KL_EXACT

# Claim 10: online DPO against DPO, both learning from the same pairs (online DPO through a
# reward model trained on them), with exact KL and exact expected gold reward.
EXACT_ONLINE_PAIRS = (("online_dpo", "dpo"),)

# Relative growth of the exact KL over the second half of training: above this it "keeps
# growing", below it it "has settled" (a 5% change over as many steps as it took to get there).
GROWTH_TOLERANCE = 0.05


def deterministic(data: RunData) -> Finding:
    """Claim 3: DPO's exact KL still grows in the second half at every beta; IPO's settles."""
    growth = _second_half_growth(data)
    if growth.empty or not {"dpo", "ipo"} <= set(growth["method"]):
        return not_measured(
            f"no dpo and ipo runs with deterministic labels logging {EVAL_KL_EXACT}"
        )
    summary = over_seeds(growth, ["method", "beta"], "relative_growth")
    finals = over_seeds(growth, ["method", "beta"], "kl_end")
    checks = {}
    for _, row in summary.iterrows():
        label = f"{row['method']} beta {row['beta']:g} ({ci_text(row, signed=True)})"
        if row["method"] == "dpo":
            checks[f"{label} keeps growing"] = above(row, GROWTH_TOLERANCE)
        elif row["method"] == "ipo":
            checks[f"{label} has settled"] = below(row, GROWTH_TOLERANCE)
    # No check on IPO's final KL falling as tau grows: DPO's falls with beta too, so it would
    # not tell the methods apart; the final KLs stay in the table.
    verdict, why = decide(checks)
    measured = "; ".join(
        f"{r['method']} b{r['beta']:g}: growth {ci_text(r, 2, signed=True)}, final KL {ci_text(f, 2)}"
        for (_, r), (_, f) in zip(summary.iterrows(), finals.iterrows(), strict=True)
    )
    table = pd.concat(
        [
            summary.assign(quantity="relative KL growth, second half"),
            finals.assign(quantity="final exact KL"),
        ],
        ignore_index=True,
    )
    return Finding(verdict, why, measured, table)


def _second_half_growth(data: RunData) -> pd.DataFrame:
    """Per run: exact KL at the evaluation nearest mid-training and at the end, and growth."""
    labels = data.runs.get("params.data.labels")
    if labels is None:
        return pd.DataFrame()
    runs = data.runs[labels == "deterministic"]
    curves = RunData(runs=runs, history=data.history).curves([EVAL_KL_EXACT])
    rows = []
    for run_id, curve in curves.dropna(subset=[EVAL_KL_EXACT]).groupby("run_id", sort=True):
        curve = curve.sort_values("step")
        last = curve["step"].iat[-1]
        mid = curve.iloc[(curve["step"] - last / 2).abs().argmin()]
        end = curve.iloc[-1]
        if mid["step"] in (0, last):
            continue  # too few evaluations to tell a second half
        rows.append(
            {
                "run_id": run_id,
                "method": end["method"],
                "beta": end["beta"],
                "seed": end["seed"],
                "kl_mid": mid[EVAL_KL_EXACT],
                "kl_end": end[EVAL_KL_EXACT],
                "relative_growth": (end[EVAL_KL_EXACT] - mid[EVAL_KL_EXACT]) / mid[EVAL_KL_EXACT],
            }
        )
    return pd.DataFrame(rows)


def frontier_gap(data: RunData) -> Finding:
    """Claim 4: the final gap to the optimal frontier per method and beta, and its change."""
    column = f"metrics.{EVAL_FRONTIER_GAP}"
    if column not in data.runs:
        return not_measured(f"no run logs {EVAL_FRONTIER_GAP}")
    runs = data.runs.dropna(subset=[column, "beta"]).rename(columns={column: "gap"})
    summary = over_seeds(runs, ["method", "beta"], "gap")
    rows = []
    for method, group in runs.groupby("method", sort=True):
        low, high = group["beta"].min(), group["beta"].max()
        if low == high:
            continue  # one strength (sft): nothing to compare
        at = group.set_index(["beta", "seed"])["gap"]
        for seed in sorted(
            set(group.loc[group["beta"] == low, "seed"])
            & set(group.loc[group["beta"] == high, "seed"])
        ):
            rows.append(
                {"method": method, "seed": seed, "shrink": at[(low, seed)] - at[(high, seed)]}
            )
    shrink = over_seeds(
        pd.DataFrame(rows, columns=["method", "seed", "shrink"]), ["method"], "shrink"
    )
    if shrink.empty:
        return not_measured("no method with final gaps at two betas for a common seed")
    checks = {
        f"{r['method']} gap shrinks from the smallest to the largest beta ({ci_text(r, signed=True)})": above(
            r
        )
        for _, r in shrink.iterrows()
    }
    verdict, why = decide(checks)
    measured = "; ".join(
        f"{method}: " + ", ".join(f"b{r['beta']:g} {ci_text(r, 2)}" for _, r in group.iterrows())
        for method, group in summary.groupby("method", sort=True)
    )
    table = pd.concat(
        [
            summary.assign(quantity="final gap to optimal frontier"),
            shrink.assign(quantity="gap shrink, smallest to largest beta"),
        ],
        ignore_index=True,
    )
    return Finding(verdict, "Our own measurement. " + why, "final gap: " + measured, table)


def online_vs_offline_exact(data: RunData) -> Finding:
    """Claim 10: claim 8's front lead of online DPO over DPO, measured with the exact world's
    exact KL and exact expected gold reward instead of sampled estimates."""
    return every_front_ahead(
        data, EXACT_ONLINE_PAIRS, kl=EVAL_KL_EXACT, metric=EVAL_GOLD_REWARD_EXACT
    )
