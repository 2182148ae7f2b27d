"""Claim 6, decided on the sweep's trial runs: how much each method's result depends on beta.

The sweep is a grid over method x beta, every trial trained with each seed, so every
(method, beta) cell has its seeds' final objective values in MLflow (nested trial runs).
"""

from __future__ import annotations

import pandas as pd

from analysis.load import RunData
from analysis.paper import SWEEP_OBJECTIVE
from analysis.paper.verdicts import (
    NOT_MEASURED,
    Finding,
    ci_text,
    decide,
    not_measured,
    over_seeds,
    separated,
)
from harness.config import tags as tag

COMPLETE = "COMPLETE"
TRIAL_STATE = f"tags.{tag.TRIAL_STATE}"


def beta_sensitivity(data: RunData, importances: pd.DataFrame | None) -> Finding:
    """Per method: the best beta, and whether beta matters (best cell above the worst)."""
    column = f"metrics.{SWEEP_OBJECTIVE}"
    runs = data.runs
    if column not in runs or TRIAL_STATE not in runs:
        return not_measured(f"no completed sweep trial logs {SWEEP_OBJECTIVE}")
    done = runs[runs[TRIAL_STATE] == COMPLETE].dropna(subset=[column, "beta"])
    cells = over_seeds(done.rename(columns={column: "objective"}), ["method", "beta"], "objective")
    if cells.empty:
        return not_measured(f"no completed sweep trial logs {SWEEP_OBJECTIVE}")
    checks, best_rows = {}, []
    for method, group in cells.groupby("method", sort=True):
        best = group.loc[group["mean"].idxmax()]
        worst = group.loc[group["mean"].idxmin()]
        best_rows.append(best)
        if len(group) < 2:
            continue
        checks[
            f"{method}: beta {best['beta']:g} ({ci_text(best)}) beats beta {worst['beta']:g} "
            f"({ci_text(worst)})"
        ] = separated(best, worst)
    verdict, why = decide(checks) if checks else (NOT_MEASURED, "Every method ran at one beta.")
    measured = "best beta: " + "; ".join(
        f"{r['method']} {r['beta']:g} ({ci_text(r)})" for r in best_rows
    )
    if importances is not None and not importances.empty:
        measured += "; fANOVA importance: " + ", ".join(
            f"{p} {v:.2f}"
            for p, v in zip(importances["param"], importances["importance"], strict=True)
        )
    table = cells.assign(quantity=f"final {SWEEP_OBJECTIVE}")
    return Finding(verdict, why, measured, table)
