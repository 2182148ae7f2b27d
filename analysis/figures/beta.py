"""Sensitivity to beta: final gold reward, KL and gold win rate against beta per method.

Each point is the mean over seeds (param `train.seed`) of a metric's final value, with a 95%
Student-t interval over seeds as error bars (none for a single seed).
"""

from __future__ import annotations

import pandas as pd

from analysis.figures import Plot, Skip, new_figure
from analysis.load import RunData
from analysis.stats import mean_ci
from harness.config.metrics import (
    EVAL_GOLD_REWARD,
    EVAL_GOLD_REWARD_EXACT,
    EVAL_KL,
    EVAL_KL_EXACT,
    winrate,
)

# Preferred key first: the exact world's exact metrics over the sampled estimates.
PANELS = {
    "gold reward": (EVAL_GOLD_REWARD_EXACT, EVAL_GOLD_REWARD),
    "KL to ref. [nats]": (EVAL_KL_EXACT, EVAL_KL),
    "gold win rate\nvs reference": (winrate("gold", "reference"),),
}
COLUMNS = ["panel", "metric", "method", "beta", "n", "mean", "ci_low", "ci_high"]


def plot(data: RunData, colors: dict[str, str]) -> Plot:
    runs = data.runs.dropna(subset=["beta"])
    if not (runs.groupby("method")["beta"].nunique() >= 2).any():
        raise Skip("no method was run at two or more values of beta")
    rows = []
    for panel, candidates in PANELS.items():
        key = next((k for k in candidates if data.has_metric(k)), None)
        if key is None:
            continue
        for (method, beta), group in runs.groupby(["method", "beta"], sort=True):
            mean, low, high = mean_ci(group[f"metrics.{key}"])
            count = int(group[f"metrics.{key}"].notna().sum())
            rows.append([panel, key, method, beta, count, mean, low, high])
    table = pd.DataFrame(rows, columns=COLUMNS).query("n > 0")
    if table.empty:
        raise Skip("no run logs eval/gold/reward, eval/kl or winrate/gold/vs_reference")
    panels = list(table.groupby("panel", sort=False))
    fig, axes = new_figure(len(panels), panel_height=1.4)
    for ax, (panel, points) in zip(axes, panels, strict=True):
        for method, line in points.groupby("method", sort=True):
            x, y, low, high = (
                line[c].to_numpy(float) for c in ("beta", "mean", "ci_low", "ci_high")
            )
            bars = ax.errorbar(
                x,
                y,
                yerr=[y - low, high - y],
                color=colors[method],
                marker="o",
                capsize=2,
                label=method,
            )
            bars.lines[0].set_gid(f"{panel}:{method}")
        ax.set_ylabel(panel)
        ax.set_xscale("log")
    axes[0].legend(loc="best")
    axes[-1].set_xlabel(r"$\beta$ (log scale)")
    return Plot(fig, table.reset_index(drop=True))
