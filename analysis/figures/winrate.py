"""Win rate against sampling temperature (DPO paper, Figures 2 right and 3), with CI bands.

Reads `winrate/{judge}/vs_{baseline}/t{T}` and its `_ci_low`/`_ci_high` (one panel per judge and
baseline). A configuration run once is drawn with its logged interval; one run with several
seeds is drawn as the seed mean with a 95% Student-t interval over seeds.
"""

from __future__ import annotations

import pandas as pd

from analysis.figures import Plot, Skip, legend_below, new_figure
from analysis.load import RunData
from analysis.stats import mean_ci
from analysis.style import variants
from harness.config.metrics import CI_HIGH, CI_LOW, parse_winrate

COLUMNS = [
    "judge",
    "baseline",
    "method",
    "beta",
    "temperature",
    "n",
    "winrate",
    "ci_low",
    "ci_high",
]


def per_temperature(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, judge, baseline, temperature) with the logged win rate and its CI."""
    rows = []
    for column in runs.columns:
        parsed = column.startswith("metrics.") and parse_winrate(column.removeprefix("metrics."))
        if not parsed or parsed[2] is None:  # not a win rate, or the headline
            continue
        judge, baseline, temperature = parsed
        logged = runs[runs[column].notna()]
        for _, run in logged.iterrows():
            rows.append(
                {
                    "run_id": run["run_id"],
                    "method": run["method"],
                    "beta": run["beta"],
                    "judge": judge,
                    "baseline": baseline,
                    "temperature": float(temperature),
                    "winrate": run[column],
                    "ci_low": run.get(column + CI_LOW),
                    "ci_high": run.get(column + CI_HIGH),
                }
            )
    return pd.DataFrame(rows, columns=["run_id", *COLUMNS])


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Seed means: a single run keeps its logged CI, several get a t-interval over seeds."""
    rows = []
    keys = ["judge", "baseline", "method", "beta", "temperature"]
    for key, group in table.groupby(keys, sort=True):
        if len(group) == 1:
            row = group.iloc[0]
            stats = (row["winrate"], row["ci_low"], row["ci_high"])
        else:
            stats = mean_ci(group["winrate"])
        rows.append(
            dict(zip(keys, key, strict=True))
            | {"n": len(group)}
            | dict(zip(["winrate", "ci_low", "ci_high"], stats, strict=True))
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def plot(data: RunData, colors: dict[str, str]) -> Plot:
    table = summarize(per_temperature(data.runs))
    if table.empty:
        raise Skip("no winrate/{judge}/vs_{baseline}/t{T} metrics")
    styles = variants(data.runs, colors)
    panels = list(table.groupby(["judge", "baseline"], sort=True))
    fig, axes = new_figure(len(panels), panel_height=2.0)
    for ax, ((judge, baseline), panel) in zip(axes, panels, strict=True):
        for (method, beta), line in panel.groupby(["method", "beta"], sort=True):
            style = styles[(method, beta)]
            ax.plot(
                line["temperature"],
                line["winrate"],
                marker="o",
                markersize=2.5,
                color=style["color"],
                linestyle=style["linestyle"],
                label=style["label"],
                gid=f"{judge}/{baseline}:{method}:{beta:g}",
            )
            ax.fill_between(
                line["temperature"],
                line["ci_low"],
                line["ci_high"],
                color=style["color"],
                alpha=0.1,
                linewidth=0,
            )
        ax.axhline(0.5, color="grey", linewidth=0.6, linestyle=":")
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"win rate vs {baseline}\n({judge} judge)")
    axes[-1].set_xlabel("sampling temperature")
    legend_below(fig, axes)
    return Plot(fig, table)
