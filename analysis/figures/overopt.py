"""Over-optimization (Rafailov et al. 2024, after Gao et al. 2022): gold win rate against sqrt(KL).

Each run is a point: its final gold win rate against the reference and d = sqrt(KL) of its
final policy (a sampled KL estimate below zero counts as 0). Per method with at least three
distinct d, the gain over the reference's own 0.5 is fitted with both of Gao et al.'s forms,
best-of-n R(d) = d (alpha - beta d) and RL R(d) = d (alpha - beta log d); the fitted
parameters and their 95% intervals are written beside the figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures import Plot, Skip, new_figure
from analysis.load import RunData
from analysis.stats import GAO_FORMS, fit_gao_ci
from harness.config.metrics import EVAL_KL, EVAL_KL_EXACT, winrate

WINRATE = winrate("gold", "reference")
KL_KEYS = (EVAL_KL_EXACT, EVAL_KL)
FORM_STYLES = {"bon": "-", "rl": "--"}
FORM_LABELS = {"bon": r"$d(\alpha-\beta d)$", "rl": r"$d(\alpha-\beta\log d)$"}
MIN_POINTS = 3  # two parameters per form: fewer points fit exactly and say nothing
FIT_COLUMNS = [
    "method",
    "form",
    "alpha",
    "alpha_ci_low",
    "alpha_ci_high",
    "beta",
    "beta_ci_low",
    "beta_ci_high",
    "n",
]


def final_points(data: RunData) -> pd.DataFrame | None:
    """One row per run: labels, kl, winrate, sqrt_kl; None if no run logs both."""
    kl_key = next((k for k in KL_KEYS if data.has_metric(k)), None)
    if not data.has_metric(WINRATE) or kl_key is None:
        return None
    points = data.runs[["run_id", "run_name", "method", "beta", "seed"]].copy()
    points["kl"] = data.runs[f"metrics.{kl_key}"]
    points["winrate"] = data.runs[f"metrics.{WINRATE}"]
    points = points.dropna(subset=["kl", "winrate"])
    points["sqrt_kl"] = np.sqrt(points["kl"].clip(lower=0))
    return points.reset_index(drop=True)


def fit_table(points: pd.DataFrame) -> pd.DataFrame:
    """Both forms' coefficients with 95% intervals, per method with MIN_POINTS distinct d."""
    fits = []
    for method, group in points.groupby("method", sort=True):
        if group["sqrt_kl"].nunique() < MIN_POINTS:
            continue
        for form in GAO_FORMS:
            fit = fit_gao_ci(form, group["sqrt_kl"], group["winrate"] - 0.5)
            fits.append({"method": method, "form": form, **fit})
    return pd.DataFrame(fits, columns=FIT_COLUMNS)


def plot(data: RunData, colors: dict[str, str]) -> Plot:
    points = final_points(data)
    if points is None:
        raise Skip(f"no run logs both {WINRATE} and eval/kl")
    fits = fit_table(points)
    fig, (ax,) = new_figure(panel_height=2.3)
    for method, group in points.groupby("method", sort=True):
        ax.scatter(
            group["sqrt_kl"],
            group["winrate"],
            s=12,
            color=colors[method],
            label=method,
            gid=f"points:{method}",
        )
        grid = np.linspace(0, group["sqrt_kl"].max() * 1.1, 100)[1:]
        for _, fit in fits[fits["method"] == method].iterrows():
            ax.plot(
                grid,
                0.5 + GAO_FORMS[fit["form"]](grid, fit["alpha"], fit["beta"]),
                color=colors[method],
                linestyle=FORM_STYLES[fit["form"]],
                gid=f"fit:{method}:{fit['form']}",
            )
    if not fits.empty:  # the two forms' line styles, once, in black
        for form, linestyle in FORM_STYLES.items():
            ax.plot([], [], color="black", linestyle=linestyle, label=FORM_LABELS[form])
    ax.axhline(0.5, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlabel(r"$d=\sqrt{\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})}$ [$\sqrt{\mathrm{nats}}$]")
    ax.set_ylabel("gold win rate vs reference")
    ax.legend(loc="best")
    return Plot(fig, points, tables={"fit": fits})
