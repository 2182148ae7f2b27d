"""The paper figures: each module's `plot` draws one figure from the runs of one dataset.

A `plot` returns a `Plot` (the figure and the tidy table of exactly what it drew, which the
tests compare with the logged metrics) or raises `Skip` saying which data is absent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd
from matplotlib import rcParams
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from analysis.style import COLUMN_WIDTH

POINTS_PER_INCH = 72


@dataclass
class Plot:
    figure: Figure
    data: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # CSVs beside it, by suffix


class Skip(Exception):
    """The figure's data is absent from the selected runs; the message says what is missing."""


def new_figure(nrows: int = 1, panel_height: float = 2.2, sharex: bool = True):
    """A column-width figure of `nrows` stacked panels; returns (figure, list of axes)."""
    fig = Figure(figsize=(COLUMN_WIDTH, 0.35 + panel_height * nrows), layout="constrained")
    axes = fig.subplots(nrows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, list(axes)


def legend_below(fig: Figure, axes) -> None:
    """One legend under all panels, each label once, so no panel's data is hidden behind it.

    As many columns (up to 3) as the widest label lets fit the figure's width, and the figure
    grows by the legend's height: a long legend would otherwise be cut at the sides or squeeze
    the panels to nothing (a study of 20 variants does both at column width)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if not entries:
        return
    font = FontProperties(size=rcParams["legend.fontsize"])
    ncols = legend_columns(list(entries), font, width=fig.get_figwidth() * POINTS_PER_INCH)
    rows = math.ceil(len(entries) / ncols)
    size = font.get_size_in_points()
    height = (
        rows * (1 + rcParams["legend.labelspacing"]) + 2 * rcParams["legend.borderpad"]
    ) * size
    fig.set_figheight(fig.get_figheight() + height / POINTS_PER_INCH)
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=ncols)


def legend_columns(labels: list[str], font: FontProperties, width: float, most: int = 3) -> int:
    """How many legend columns of `labels` fit in `width` points (at least one)."""
    size = font.get_size_in_points()
    text = max(TextToPath().get_text_width_height_descent(s, font, ismath=False)[0] for s in labels)
    column = (rcParams["legend.handlelength"] + rcParams["legend.handletextpad"]) * size + text
    gap = rcParams["legend.columnspacing"] * size
    room = width - 2 * rcParams["legend.borderpad"] * size
    return max(1, min(most, len(labels), int((room + gap) // (column + gap))))
