"""Over-optimization (Rafailov et al. 2024, after Gao et al. 2022): gold win rate against sqrt(KL).

Each run is a point: its final gold win rate against the reference and d = sqrt(KL) of its
final policy (a sampled KL estimate below zero counts as 0). Per method with at least three
runs, the gain over the reference's own 0.5 is fitted with both of Gao et al.'s forms,
best-of-n R(d) = d (alpha - beta d) and RL R(d) = d (alpha - beta log d); the fitted
parameters are written beside the figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.figures import Plot, Skip, new_figure
from analysis.load import RunData
from analysis.stats import GAO_FORMS, fit_gao
from harness.metrics import EVAL_KL, EVAL_KL_EXACT, winrate

WINRATE = winrate("gold", "reference")
KL_KEYS = (EVAL_KL_EXACT, EVAL_KL)
FORM_STYLES = {"bon": "-", "rl": "--"}
FORM_LABELS = {"bon": r"$d(\alpha-\beta d)$", "rl": r"$d(\alpha-\beta\log d)$"}
MIN_POINTS = 3  # two parameters per form: fewer points fit exactly and say nothing


def plot(data: RunData, colors: dict[str, str]) -> Plot:
    kl_key = next((k for k in KL_KEYS if data.has_metric(k)), None)
    if not data.has_metric(WINRATE) or kl_key is None:
        raise Skip(f"no run logs both {WINRATE} and eval/kl")
    points = data.runs[["run_id", "run_name", "method", "beta", "seed"]].copy()
    points["kl"] = data.runs[f"metrics.{kl_key}"]
    points["winrate"] = data.runs[f"metrics.{WINRATE}"]
    points = points.dropna(subset=["kl", "winrate"])
    points["sqrt_kl"] = np.sqrt(points["kl"].clip(lower=0))

    fig, (ax,) = new_figure(panel_height=2.3)
    fits = []
    for method, group in points.groupby("method", sort=True):
        color = colors[method]
        ax.scatter(
            group["sqrt_kl"],
            group["winrate"],
            s=12,
            color=color,
            label=method,
            gid=f"points:{method}",
        )
        if group["sqrt_kl"].nunique() < MIN_POINTS:
            continue
        grid = np.linspace(0, group["sqrt_kl"].max() * 1.1, 100)[1:]
        for form, function in GAO_FORMS.items():
            alpha, beta = fit_gao(form, group["sqrt_kl"], group["winrate"] - 0.5)
            fits.append(
                {"method": method, "form": form, "alpha": alpha, "beta": beta, "n": len(group)}
            )
            ax.plot(
                grid,
                0.5 + function(grid, alpha, beta),
                color=color,
                linestyle=FORM_STYLES[form],
                gid=f"fit:{method}:{form}",
            )
    if fits:  # the two forms' line styles, once, in black
        for form, linestyle in FORM_STYLES.items():
            ax.plot([], [], color="black", linestyle=linestyle, label=FORM_LABELS[form])
    ax.axhline(0.5, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xlabel(r"$d=\sqrt{\mathrm{KL}(\pi\,\|\,\pi_{\mathrm{ref}})}$ [$\sqrt{\mathrm{nats}}$]")
    ax.set_ylabel("gold win rate vs reference")
    ax.legend(loc="best")
    fit_table = pd.DataFrame(fits, columns=["method", "form", "alpha", "beta", "n"])
    return Plot(fig, points.reset_index(drop=True), tables={"fit": fit_table})
