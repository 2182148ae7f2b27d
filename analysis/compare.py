"""The comparison protocol: every method against a baseline, at matched KL, over seeds.

One implementation, used by `harness compare` and by the paper report (claim 1). Per method
and per seed common to it and the baseline (seeds pair: the same seed fixes data order and
evaluation samples), two quantities, each a per-seed difference summarised over seeds:

- `front lead`: how far the method's reward-KL front lies above the baseline's at matched
  KL (analysis.stats.matched_front_lead: both fronts built from the same number of runs, so
  the side with more runs gains nothing by chance). Every evaluation of every run is a point.
- `final <metric>`: the method's final metric minus the baseline's, each the mean over the
  method's runs of that seed (all its configurations).

Intervals are Student-t over seeds (paired differences; Welch's two-sample interval where
seeds do not pair). Where the metric's runs log a per-run standard error over prompts
(`<metric>_stderr`, or `_ci_low`/`_ci_high` as win rates do) the final difference also gets
an interval over prompts. Every comparison of one call is Holm-corrected (raw and corrected
p-values shown); one that is not shown gets its minimum detectable effect at 80% power.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis import stats
from analysis.load import AnalysisError, RunData
from harness.config.metrics import (
    CI_HIGH,
    CI_LOW,
    EVAL_GOLD_REWARD,
    EVAL_KL,
    EVAL_KL_EXACT,
    TRAIN_COMPLETIONS,
    TRAIN_TOKENS,
)

ALPHA = 0.05  # two-sided, family-wise after Holm
POWER = 0.8
FRONT_LEAD = "front lead at matched KL"
HIGHER, LOWER, NOT_SHOWN = "higher", "lower", "not shown"
COLUMNS = [
    "method",
    "baseline",
    "quantity",
    "n_seeds",
    "paired",
    "mean",
    "ci_low",
    "ci_high",
    "p",
    "p_holm",
    "result",
    "mde",
    "prompt_ci_low",
    "prompt_ci_high",
    "runs",
    "baseline_runs",
    "completions",
    "baseline_completions",
    "tokens",
    "baseline_tokens",
]


@dataclass(frozen=True)
class Protocol:
    """What to compare: `metric` (the reward) against `kl` (None: eval/kl_exact where the
    runs log it, else eval/kl), each method against `baseline`."""

    baseline: str = "dpo"
    metric: str = EVAL_GOLD_REWARD
    kl: str | None = None


def kl_key(data: RunData, protocol: Protocol) -> str:
    if protocol.kl:
        return protocol.kl
    return EVAL_KL_EXACT if data.has_metric(EVAL_KL_EXACT) else EVAL_KL


def compare(data: RunData, protocol: Protocol = Protocol()) -> pd.DataFrame:
    """One row per (method, quantity) against the baseline; see the module docstring."""
    methods = sorted(set(data.runs["method"]) - {protocol.baseline})
    if protocol.baseline not in set(data.runs["method"]):
        raise AnalysisError(
            f"baseline {protocol.baseline!r} has no finished run; methods: "
            f"{', '.join(sorted(set(data.runs['method']))) or 'none'}"
        )
    rows = []
    for method in methods:
        leads = front_leads(data, method, protocol.baseline, kl_key(data, protocol), protocol)
        if len(leads):
            rows.append(_row(data, method, protocol, FRONT_LEAD, _paired(leads["lead"])))
        finals = final_differences(data, method, protocol)
        if finals is not None:
            rows.append(_row(data, method, protocol, f"final {protocol.metric}", finals))
    table = pd.DataFrame(rows, columns=COLUMNS)
    return decide(table)


def decide(table: pd.DataFrame) -> pd.DataFrame:
    """Holm-adjusted p-values over every row; result higher/lower/not shown at ALPHA; the
    minimum detectable effect where not shown."""
    table = table.copy()
    table["p_holm"] = stats.holm(table["p"].to_numpy(dtype=float)) if len(table) else []
    shown = table["p_holm"] < ALPHA
    table["result"] = np.where(shown, np.where(table["mean"] > 0, HIGHER, LOWER), NOT_SHOWN)
    table.loc[shown, "mde"] = np.nan
    return table


def front_leads(
    data: RunData, method: str, baseline: str, kl: str, protocol: Protocol
) -> pd.DataFrame:
    """Per common seed: matched_front_lead of `method`'s runs over `baseline`'s."""
    return _leads_by_seed(data, (method, baseline), kl, protocol, stats.matched_front_lead)


def point_leads(
    data: RunData, method: str, baseline: str, kl: str, protocol: Protocol
) -> pd.DataFrame:
    """Per common seed: the lead of `method`'s points (one evaluation per run, as best-of-n
    logs) over `baseline`'s training paths at the points' KL (stats.lead_over_paths)."""

    def lead(ours, theirs):
        return stats.lead_over_paths(*stats.pool_runs(ours), theirs)

    return _leads_by_seed(data, (method, baseline), kl, protocol, lead)


def _leads_by_seed(data: RunData, pair, kl: str, protocol: Protocol, lead) -> pd.DataFrame:
    by_method = data.paths_by_seed(kl, protocol.metric)
    ours, theirs = (by_method.get(name, {}) for name in pair)
    rows = [
        {"seed": seed, "lead": lead(ours[seed], theirs[seed])}
        for seed in sorted(set(ours) & set(theirs))
    ]
    return pd.DataFrame(rows, columns=["seed", "lead"]).dropna()


@dataclass(frozen=True)
class Difference:
    """A summarised difference: t-test fields, whether paired, and the MDE."""

    test: dict
    paired: bool
    mde: float
    prompt_ci: tuple[float, float] = (np.nan, np.nan)


def _paired(values) -> Difference:
    test = stats.t_test(values)
    return Difference(test, True, stats.minimum_detectable_effect(test["sd"], test["n"]))


def final_differences(data: RunData, method: str, protocol: Protocol) -> Difference | None:
    """The final metric, method minus baseline, over seeds (paired where they pair)."""
    column = f"metrics.{protocol.metric}"
    if column not in data.runs:
        return None
    per_seed = {
        name: data.runs[data.runs["method"] == name].groupby("seed")[column].mean().dropna()
        for name in (method, protocol.baseline)
    }
    a, b = per_seed[method], per_seed[protocol.baseline]
    common = sorted(set(a.index) & set(b.index))
    if len(common) >= 2 or (len(common) == 1 and (len(a) < 2 or len(b) < 2)):
        diff = a[common] - b[common]
        result = _paired(diff.to_numpy())
        return Difference(result.test, True, result.mde, _prompt_ci(data, method, protocol, common))
    if len(a) < 2 or len(b) < 2:
        return None
    return _welch(a.to_numpy(), b.to_numpy())


def _welch(a: np.ndarray, b: np.ndarray) -> Difference:
    """Welch's interval and p-value for mean(a) - mean(b) (Welch-Satterthwaite dof). MDE: the
    paired formula at n = min(n_a, n_b) with sd = sqrt(s_a^2 + s_b^2), an upper bound."""
    result = scipy_stats.ttest_ind(a, b, equal_var=False)
    low, high = result.confidence_interval(1 - ALPHA)
    sd = float(np.sqrt(a.var(ddof=1) + b.var(ddof=1)))
    n = min(a.size, b.size)
    test = {"n": n, "mean": float(a.mean() - b.mean()), "sd": sd}
    test |= {"ci_low": float(low), "ci_high": float(high), "p": float(result.pvalue)}
    return Difference(test, False, stats.minimum_detectable_effect(sd, n))


def _prompt_ci(data: RunData, method: str, protocol: Protocol, seeds) -> tuple[float, float]:
    """Normal interval over prompts of the mean over `seeds` of the final difference, from each
    run's logged standard error: sqrt(sum over seeds of both sides' se^2) / n_seeds (a side's
    se of a seed with several runs: the root mean square). Ignoring the covariance of runs
    scored on the same prompts makes it conservative (wider)."""
    runs = data.runs
    se = _stderr(runs, protocol.metric)
    if se is None:
        return (np.nan, np.nan)
    frame = runs[["method", "seed"]].assign(se=se, value=runs[f"metrics.{protocol.metric}"])
    frame = frame[frame["seed"].isin(seeds)]
    sides = {}
    for name in (method, protocol.baseline):
        group = frame[frame["method"] == name].groupby("seed")
        sides[name] = (group["value"].mean(), np.sqrt(group["se"].apply(lambda v: (v**2).mean())))
    mean = float((sides[method][0] - sides[protocol.baseline][0]).mean())
    variance = (sides[method][1] ** 2).sum() + (sides[protocol.baseline][1] ** 2).sum()
    half = scipy_stats.norm.ppf(1 - ALPHA / 2) * float(np.sqrt(variance)) / len(seeds)
    return (mean - half, mean + half)


def _stderr(runs: pd.DataFrame, metric: str) -> pd.Series | None:
    """Each run's standard error over prompts of `metric`, if the runs log one."""
    if f"metrics.{metric}_stderr" in runs:
        return runs[f"metrics.{metric}_stderr"]
    low, high = f"metrics.{metric}{CI_LOW}", f"metrics.{metric}{CI_HIGH}"
    if low in runs and high in runs:
        return (runs[high] - runs[low]) / (2 * scipy_stats.norm.ppf(1 - ALPHA / 2))
    return None


def _row(data: RunData, method: str, protocol: Protocol, quantity: str, diff: Difference):
    t = diff.test
    head = [method, protocol.baseline, quantity, t["n"], diff.paired, t["mean"]]
    head += [t["ci_low"], t["ci_high"], t["p"], np.nan, "", diff.mde, *diff.prompt_ci]
    return head + _budgets(data, method, protocol.baseline)


def _budgets(data: RunData, method: str, baseline: str) -> list[float]:
    """runs, baseline_runs, completions, baseline_completions, tokens, baseline_tokens: the
    run counts and the mean final training budget per run (NaN where not logged)."""
    out = [float((data.runs["method"] == m).sum()) for m in (method, baseline)]
    for key in (TRAIN_COMPLETIONS, TRAIN_TOKENS):
        column = f"metrics.{key}"
        for m in (method, baseline):
            values = data.runs.loc[data.runs["method"] == m, column] if column in data.runs else []
            out.append(float(np.mean(values)) if len(values) else np.nan)
    return out


def markdown(table: pd.DataFrame) -> str:
    """The table as Markdown: intervals in brackets, raw and Holm p, the MDE where not shown."""
    header = "| method | vs | quantity | seeds | difference [95% CI] | p | p (Holm) | result |"
    lines = [header, "|:--|:--|:--|--:|:--|--:|--:|:--|"]
    for _, r in table.iterrows():
        result = r["result"]
        if result == NOT_SHOWN and np.isfinite(r["mde"]):
            result += f" (MDE {r['mde']:.3g} at 80% power)"
        pairing = "" if r["paired"] else ", unpaired"
        lines.append(
            f"| {r['method']} | {r['baseline']} | {r['quantity']} | {r['n_seeds']}{pairing} | "
            f"{_interval(r)} | {_p(r['p'])} | {_p(r['p_holm'])} | {result} |"
        )
    return "\n".join(lines) + "\n"


def _interval(r) -> str:
    if not np.isfinite(r["ci_low"]):
        return f"{r['mean']:+.4g}"
    return f"{r['mean']:+.4g} [{r['ci_low']:+.4g}, {r['ci_high']:+.4g}]"


def _p(p: float) -> str:
    return "–" if not np.isfinite(p) else f"{p:.3g}"


def write(table: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """`stem`.csv (every column) and `stem`.md (the readable table), each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.csv", out / f"{stem}.md"]
    texts = [table.to_csv(index=False, float_format="%.6g", lineterminator="\n"), markdown(table)]
    for path, text in zip(paths, texts, strict=True):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths
