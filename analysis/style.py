"""One look for every figure: column-width sizes, a fixed colour per method, deterministic files."""

from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib
import pandas as pd

COLUMN_WIDTH = 3.3  # inches: one column of a two-column paper (NeurIPS/ICML ~3.25-3.4)

# Okabe & Ito's colour-blind-safe palette first, then tab10's and Tol's remaining hues. Every
# registered method keeps its colour whichever runs are plotted; black is kept for the analytic
# optimal frontier, the extras for methods a user registers.
METHOD_COLORS = {
    "dpo": "#0072B2",
    "ipo": "#D55E00",
    "cdpo": "#009E73",
    "rdpo": "#2CA02C",
    "slic": "#CC79A7",
    "kto": "#E69F00",
    "orpo": "#56B4E9",
    "simpo": "#8C564B",
    "sft": "#7F7F7F",
    "rloo": "#9467BD",
    # chosen to stay at least 26 CIELAB units from every colour above (tests/test_analysis.py)
    "rloo_gold": "#DDCC77",
    "online_dpo": "#E7298A",
    "online_dpo_gold": "#332288",
    "grpo": "#882255",
    "grpo_gold": "#661100",
    "bon": "#D62728",
    "bon_gold": "#BCBD22",
}
EXTRA_COLORS = ("#17BECF", "#F0E442", "#D62728", "#1F77B4", "#FF7F0E", "#E377C2")
LINESTYLES = ("-", "--", ":", "-.")
OPTIMAL_COLOR = "black"

RC = {
    "figure.figsize": (COLUMN_WIDTH, 2.4),
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 6.5,
    "legend.frameon": False,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays editable and searchable
}
# Without these, PNG and PDF files carry the creation time and matplotlib's version.
PNG_METADATA = {"Software": None}
PDF_METADATA = {"CreationDate": None, "Creator": None, "Producer": None}


@contextlib.contextmanager
def paper_style():
    """matplotlib's defaults plus RC, whatever the user's matplotlibrc says."""
    with matplotlib.style.context(["default", RC]):
        yield


def method_colors(methods) -> dict[str, str]:
    """Method -> colour: the fixed table, then unknown methods in name order get the extras."""
    colors = {}
    extras = iter(EXTRA_COLORS * (1 + len(set(methods)) // len(EXTRA_COLORS)))
    for method in sorted(set(methods)):
        colors[method] = METHOD_COLORS.get(method) or next(extras)
    return colors


def variants(runs: pd.DataFrame, colors: dict[str, str]) -> dict[tuple[str, float], dict]:
    """(method, beta) -> line style: the method's colour, a dash pattern per beta of the method."""
    styles = {}
    for method, group in runs.groupby("method", sort=True):
        betas = sorted(group["beta"].unique())
        for i, beta in enumerate(betas):
            styles[(method, beta)] = {
                "color": colors[method],
                "linestyle": LINESTYLES[i % len(LINESTYLES)],
                "label": variant_label(method, beta, len(betas)),
            }
    return styles


def variant_label(method: str, beta: float, n_betas: int) -> str:
    return method if n_betas == 1 or pd.isna(beta) else f"{method} β={beta:g}"


def save(fig, out: Path, stem: str) -> list[Path]:
    """Write `stem`.png and `stem`.pdf into `out`; the same figure gives the same bytes."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], metadata=PNG_METADATA)
    fig.savefig(paths[1], metadata=PDF_METADATA)
    return paths
