"""How a claim's verdict is decided from its checks, and how its numbers are written.

A claim is a set of named checks, each a comparison of a 95% interval over seeds with a
threshold, named by the effect it expects: the effect holds, is not shown (the interval
straddles the threshold) or is contradicted (the interval lies on the other side). Every claim
is universal (every beta, every baseline, every method), so it is reproduced only when every
check holds and not reproduced otherwise (the why lists which held, which were not shown and
which were contradicted). That is an intersection-union test: each check at 5% keeps the
claim's false-positive rate at 5% without a multiplicity correction. A claim whose study has
no runs is "not measured".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from analysis.stats import mean_ci_by_group

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_MEASURED = "not measured"
CI_COLUMNS = ["n", "mean", "ci_low", "ci_high", "sd"]


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


# What a check's 95% interval says about the effect it expects.
HOLDS = "holds"  # the interval lies wholly on the expected side of the threshold
NOT_SHOWN = "not shown"  # it straddles the threshold: neither the effect nor its opposite
CONTRADICTED = "contradicted"  # it lies wholly on the other side


def decide(checks: dict[str, bool | str | None]) -> tuple[str, str]:
    """(verdict, why) from named checks, each an outcome above (True and False stand for HOLDS
    and NOT_SHOWN): which held, which were not shown, which were contradicted.

    A check is None when its interval does not exist (one seed): then nothing is decided.
    """
    if any(ok is None for ok in checks.values()):
        return NOT_MEASURED, "Fewer than two seeds: no interval to decide with."
    plain = {True: HOLDS, False: NOT_SHOWN}
    outcomes = {name: plain.get(ok, ok) for name, ok in checks.items()}
    groups = {
        kind: [name for name, got in outcomes.items() if got == kind]
        for kind in (HOLDS, NOT_SHOWN, CONTRADICTED)
    }
    verdict = REPRODUCED if len(groups[HOLDS]) == len(outcomes) else NOT_REPRODUCED
    parts = [f"{kind.capitalize()}: " + "; ".join(names) for kind, names in groups.items() if names]
    return verdict, ". ".join(parts) + "."


def over_seeds(table: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """One row per `by` group: n (seeds), mean, the 95% Student-t interval and sd of `value`."""
    return mean_ci_by_group(table, by, value)  # columns: by, then CI_COLUMNS


def above(row, threshold: float = 0.0) -> str | None:
    """HOLDS when the interval lies wholly above `threshold`, CONTRADICTED when wholly below,
    NOT_SHOWN when it straddles it; None without an interval (one seed)."""
    if math.isnan(row["ci_low"]):
        return None
    if row["ci_low"] > threshold:
        return HOLDS
    return CONTRADICTED if row["ci_high"] < threshold else NOT_SHOWN


def below(row, threshold: float = 0.0) -> str | None:
    """HOLDS when the interval lies wholly below `threshold`; as `above` otherwise."""
    if math.isnan(row["ci_high"]):
        return None
    if row["ci_high"] < threshold:
        return HOLDS
    return CONTRADICTED if row["ci_low"] > threshold else NOT_SHOWN


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
