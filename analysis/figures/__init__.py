"""The paper figures: each module's `plot` draws one figure from the runs of one dataset.

A `plot` returns a `Plot` (the figure and the tidy table of exactly what it drew, which the
tests compare with the logged metrics) or raises `Skip` saying which data is absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from analysis.style import COLUMN_WIDTH


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
    """One legend under all panels, each label once, so no panel's data is hidden behind it."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    fig.legend(
        list(entries.values()),
        list(entries),
        loc="outside lower center",
        ncols=min(3, len(entries)),
    )
