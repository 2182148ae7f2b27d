"""Gold reward against KL (DPO paper, Figure 2 left): a point per evaluation, a front per method.

In a world with exact metrics (the `exact` world) the exact KL and exact expected gold reward
are plotted, with the analytic optimal frontier of the KL-regularised objective as a black line.
Best-of-n runs (tag `best_of_n`: nothing trained, one evaluation each) are drawn as a dashed
line through their points in order of n, the reference curve of Gao et al. 2022; their sampled
KL is the bound log n - (n-1)/n (tag `eval_kl`), which the legend says.
"""

from __future__ import annotations

from analysis.figures import Plot, Skip, new_figure
from analysis.load import RunData
from analysis.stats import pareto_front
from analysis.style import OPTIMAL_COLOR
from harness.config import tags
from harness.config.metrics import EVAL_GOLD_REWARD, EVAL_GOLD_REWARD_EXACT, EVAL_KL, EVAL_KL_EXACT

SAMPLED = (EVAL_KL, EVAL_GOLD_REWARD)
EXACT = (EVAL_KL_EXACT, EVAL_GOLD_REWARD_EXACT)


def plot(data: RunData, colors: dict[str, str]) -> Plot:
    exact = all(data.has_metric(key) for key in EXACT)
    kl_key, reward_key = EXACT if exact else SAMPLED
    points = data.curves([kl_key, reward_key]).dropna(subset=[kl_key, reward_key])
    if points.empty:
        raise Skip(f"no run logs both {SAMPLED[0]} and {SAMPLED[1]}")
    points = points.rename(columns={kl_key: "kl", reward_key: "reward"})
    points["on_front"] = False
    points["n"] = points["run_id"].map(best_of_n(data))

    fig, (ax,) = new_figure(panel_height=2.3)
    for method, group in points[points["n"].notna()].groupby("method", sort=True):
        curve = group.sort_values("n")
        bound = "" if exact else ", KL bound"
        ax.plot(
            curve["kl"],
            curve["reward"],
            color=colors[method],
            linestyle="--",
            marker="o",
            markersize=2.5,
            label=f"{method} (n = {curve['n'].min():g}..{curve['n'].max():g}{bound})",
            gid=f"curve:{method}",
        )
    for method, group in points[points["n"].isna()].groupby("method", sort=True):
        color = colors[method]
        ax.scatter(
            group["kl"],
            group["reward"],
            s=9,
            color=color,
            alpha=0.55,
            linewidths=0,
            label=method,
            gid=f"points:{method}",
        )
        front = group.index[pareto_front(group["kl"], group["reward"])]
        points.loc[front, "on_front"] = True
        ax.plot(
            points.loc[front, "kl"], points.loc[front, "reward"], color=color, gid=f"front:{method}"
        )
    for optimal in data.optimal_frontiers.values():
        # Not rescaling the axes: the analytic curve may run far beyond the trained policies.
        ax.plot(
            optimal["kl"],
            optimal["reward"],
            color=OPTIMAL_COLOR,
            linewidth=1.0,
            label="optimal (analytic)",
            gid="optimal",
            scalex=False,
            scaley=False,
        )
    prefix = "exact " if exact else "sampled "
    ax.set_xlabel(prefix + r"KL$(\pi\,\|\,\pi_{\mathrm{ref}})$ [nats]")
    ax.set_ylabel("exact expected gold reward" if exact else "gold reward of samples")
    ax.legend(loc="best")
    return Plot(
        fig,
        points[
            [
                "run_id",
                "run_name",
                "method",
                "beta",
                "n",
                "seed",
                "step",
                "kl",
                "reward",
                "on_front",
            ]
        ],
    )


def best_of_n(data: RunData) -> dict[str, float]:
    """run id -> n of the best-of-n runs (tag `best_of_n`); other runs are absent."""
    column = f"tags.{tags.BEST_OF_N}"
    if column not in data.runs:
        return {}
    runs = data.runs.dropna(subset=[column])
    return dict(zip(runs["run_id"], runs[column].astype(float), strict=True))
