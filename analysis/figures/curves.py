"""Training curves per method: held-out implicit rewards, margins, accuracies and KL against step.

The implicit reward is beta * log(pi / pi_ref) summed over the response (DPO paper, eq. 5),
computed by the harness on the same held-out pairs for every method. Runs that differ only in
seed are averaged step by step.
"""

from __future__ import annotations

from analysis.figures import Plot, Skip, legend_below, new_figure
from analysis.load import RunData
from analysis.style import variants
from harness.config.metrics import EVAL_KL, EVAL_PAIR_ACCURACY, eval_rewards

PANELS = {
    eval_rewards("chosen"): "reward of\nchosen [nats]",
    eval_rewards("rejected"): "reward of\nrejected [nats]",
    eval_rewards("margins"): "reward\nmargin [nats]",
    EVAL_PAIR_ACCURACY: "pair\naccuracy",
    EVAL_KL: "KL to ref.\n[nats]",
}


def plot(data: RunData, colors: dict[str, str]) -> Plot:
    keys = [key for key in PANELS if data.has_metric(key)]
    curves = data.curves(keys)
    if not keys or curves.empty:
        raise Skip("no run logs eval/rewards/* or eval/kl")
    means = curves.groupby(["method", "beta", "step"], sort=True)[keys].mean().reset_index()
    styles = variants(data.runs, colors)
    fig, axes = new_figure(len(keys), panel_height=1.05)
    for ax, key in zip(axes, keys, strict=True):
        for (method, beta), line in means.groupby(["method", "beta"], sort=True):
            line = line.dropna(subset=[key])
            if len(line) < 2:  # best-of-n trains nothing: its one step-0 point is no curve
                continue
            style = styles[(method, beta)]
            ax.plot(
                line["step"],
                line[key],
                color=style["color"],
                linestyle=style["linestyle"],
                label=style["label"],
                gid=f"{key}:{method}:{beta:g}",
            )
        ax.set_ylabel(PANELS[key])
    axes[-1].set_xlabel("training step")
    legend_below(fig, axes[:1])
    return Plot(fig, means)
