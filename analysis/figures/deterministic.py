"""IPO against DPO under deterministic preferences (Azar et al. 2023): exact KL against step.

With preferences that are always the same way round, DPO's implicit reward gap can grow
without bound and the policy drifts ever further from the reference, while IPO's KL levels
off. Runs with param `data.labels` = deterministic that log `eval/kl_exact`; seeds averaged.
"""

from __future__ import annotations

from analysis.figures import Plot, Skip, new_figure
from analysis.load import RunData
from analysis.style import variants
from harness.config.metrics import EVAL_KL_EXACT

KEY = EVAL_KL_EXACT


def plot(data: RunData, colors: dict[str, str]) -> Plot:
    labels = data.runs.get("params.data.labels")
    if labels is None or not (labels == "deterministic").any():
        raise Skip("no run with param data.labels=deterministic")
    deterministic = data.runs[labels == "deterministic"]
    subset = RunData(runs=deterministic, history=data.history)
    curves = subset.curves([KEY]).dropna(subset=[KEY])
    if curves.empty:
        raise Skip(f"no run with data.labels=deterministic logs {KEY}")
    means = curves.groupby(["method", "beta", "step"], sort=True)[KEY].mean().reset_index()
    styles = variants(deterministic, colors)
    fig, (ax,) = new_figure(panel_height=2.2)
    for (method, beta), line in means.groupby(["method", "beta"], sort=True):
        style = styles[(method, beta)]
        ax.plot(
            line["step"],
            line[KEY],
            color=style["color"],
            linestyle=style["linestyle"],
            label=style["label"],
            gid=f"{method}:{beta:g}",
        )
    ax.set_xlabel("training step")
    ax.set_ylabel(r"exact KL$(\pi\,\|\,\pi_{\mathrm{ref}})$ [nats]")
    ax.set_title("deterministic preferences")
    ax.legend(loc="best")
    return Plot(fig, means)
