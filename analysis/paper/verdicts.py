"""How a claim's verdict is decided from its checks, and how its numbers are written.

A claim is a set of named checks, each a comparison of a 95% interval over seeds with a
threshold, named by the effect it expects. All checks hold: reproduced; none holds: not
reproduced; some: partly. A claim
whose study has no runs is "not measured".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from analysis.stats import mean_ci

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
PARTLY = "partly"
NOT_MEASURED = "not measured"
CI_COLUMNS = ["n", "mean", "ci_low", "ci_high"]


@dataclass
class Finding:
    """What the report says about one claim; every number comes from `table`."""

    verdict: str
    why: str  # one sentence: which checks held and which did not
    measured: str  # the headline numbers, for the claims table
    table: pd.DataFrame = field(default_factory=pd.DataFrame)  # every number behind it
    figures: list[str] = field(default_factory=list)  # figure file stems


def not_measured(what: str) -> Finding:
    return Finding(NOT_MEASURED, f"no data: {what}.", "–")


def decide(checks: dict[str, bool | None]) -> tuple[str, str]:
    """(verdict, why) from named checks: which held, which did not.

    A check is None when its interval does not exist (one seed): then nothing is decided.
    """
    if any(ok is None for ok in checks.values()):
        return NOT_MEASURED, "Fewer than two seeds: no interval to decide with."
    held = [name for name, ok in checks.items() if ok]
    failed = [name for name, ok in checks.items() if not ok]
    if not failed:
        verdict = REPRODUCED
    elif not held:
        verdict = NOT_REPRODUCED
    else:
        verdict = PARTLY
    parts = []
    if held:
        parts.append("Holds: " + "; ".join(held))
    if failed:
        # A check that fails has an interval that does not clear its threshold: the expected
        # effect is not shown, which is not the same as the opposite being shown.
        parts.append("Not shown: " + "; ".join(failed))
    return verdict, ". ".join(parts) + "."


def over_seeds(table: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """One row per `by` group: n (seeds), mean and the 95% Student-t interval of `value`."""
    rows = []
    for key, group in table.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        mean, low, high = mean_ci(group[value])
        rows.append([*key, int(group[value].notna().sum()), mean, low, high])
    return pd.DataFrame(rows, columns=[*by, *CI_COLUMNS])


def above(row, threshold: float = 0.0) -> bool | None:
    """The interval lies wholly above `threshold`; None without an interval (one seed)."""
    return None if math.isnan(row["ci_low"]) else bool(row["ci_low"] > threshold)


def below(row, threshold: float = 0.0) -> bool | None:
    return None if math.isnan(row["ci_high"]) else bool(row["ci_high"] < threshold)


def separated(high_row, low_row) -> bool | None:
    """The first interval lies wholly above the second; None if either does not exist."""
    if math.isnan(high_row["ci_low"]) or math.isnan(low_row["ci_high"]):
        return None
    return bool(high_row["ci_low"] > low_row["ci_high"])


def ci_text(row, digits: int = 3, signed: bool = False) -> str:
    """'0.123 [0.050, 0.196]': a mean and its interval over seeds (the mean alone for one seed)."""
    spec = f"{'+' if signed else ''}.{digits}f"
    if math.isnan(row["mean"]):
        return "–"
    if math.isnan(row["ci_low"]):
        return f"{row['mean']:{spec}} (n={int(row['n'])})"
    return f"{row['mean']:{spec}} [{row['ci_low']:{spec}}, {row['ci_high']:{spec}}]"
