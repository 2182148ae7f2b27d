"""Every figure and table from the runs in an MLflow store, written as files into one folder.

Figures 1-6 are drawn once per dataset (gold rewards of different worlds are not comparable)
from every run but sweep trials; each sweep gets its own figures (Optuna's history and
importances, and the beta curves of its trial runs); the summary table is written once for all
selected runs but sweep trials.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only: never open a window, whatever the platform's default
from matplotlib import pyplot as plt  # noqa: E402  (after choosing the backend)

from analysis import tables
from analysis.figures import Plot, Skip, beta, curves, deterministic, frontier, overopt, sweeps
from analysis.figures import winrate as winrate_figure
from analysis.load import load_runs
from analysis.style import method_colors, paper_style, save
from harness.infra.databases import mask

# File stem (before _<dataset>) -> figure; the order is the order of the printed lines.
PER_DATASET = {
    "frontier": frontier.plot,
    "winrate_temperature": winrate_figure.plot,
    "training_curves": curves.plot,
    "beta_sensitivity": beta.plot,
    "deterministic_kl": deterministic.plot,
    "overoptimization": overopt.plot,
}
SWEEP_FIGURES = {
    "history": sweeps.history,
    "importances": sweeps.importances,
    "parallel": sweeps.parallel,
}


@dataclass
class Report:
    out: Path
    log: Callable[[str], None] = print
    plots: dict[str, Plot] = field(default_factory=dict)  # by file stem
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # stem -> what was missing
    files: list[Path] = field(default_factory=list)

    def skip(self, stem: str, reason: str) -> None:
        self.skipped[stem] = reason
        self.log(f"skipped {stem}: {reason}")

    def draw(self, stem: str, build: Callable[..., Plot], *args) -> None:
        with paper_style():
            try:
                plot = build(*args)
            except Skip as reason:
                self.skip(stem, str(reason))
                return
            paths = save(plot.figure, self.out, stem)
        for suffix, table in plot.tables.items():
            paths.append(self.out / f"{stem}_{suffix}.csv")
            table.to_csv(paths[-1], index=False, float_format="%.6g", lineterminator="\n")
        plt.close(plot.figure)  # Optuna's figures are pyplot's; the others are not registered
        self.plots[stem] = plot
        self.files += paths
        self.log("wrote " + ", ".join(p.name for p in paths))

    def write_table(self, stem: str, table: pd.DataFrame) -> None:
        paths = tables.write(table, self.out, stem)
        self.tables[stem] = table
        self.files += paths
        self.log("wrote " + ", ".join(p.name for p in paths))


def generate(uri: str, experiments: list[str] | None, out: Path, log=print) -> Report:
    """Read the runs of `experiments` (all when None) at `uri`; write figures and tables to `out`."""
    data = load_runs(uri, experiments)
    report = Report(Path(out), log)
    unfinished = f" ({data.unfinished} unfinished left out)" if data.unfinished else ""
    if data.superseded:
        unfinished += f" ({data.superseded} superseded by a later run of the same name left out)"
    log(
        f"read {len(data.runs)} finished run(s) and {len(data.sweeps)} sweep(s) from {mask(uri)}"
        + unfinished
    )
    colors = method_colors(data.runs["method"])
    if data.runs.empty:
        report.skip("figures", "no finished runs in the selected experiments")
    studies = data.studies()  # sweep trials get their sweep's figures, not the dataset's
    for dataset in studies.datasets():
        subset = studies.for_dataset(dataset)
        for kind, plot in PER_DATASET.items():
            report.draw(f"{kind}_{safe(dataset)}", plot, subset, colors)
    for _, sweep in data.sweeps.iterrows():
        draw_sweep(report, data, sweep, colors)
    summary = tables.summary(studies)
    if summary.empty:
        report.skip("summary", "no finished runs in the selected experiments")
    else:
        report.write_table("summary", summary)
    log(
        f"{len(report.plots)} figure(s) as PNG and PDF and {len(report.tables)} table(s) as "
        f"CSV, Markdown and LaTeX in {report.out}/"
        + (f"; start with {report.out / 'summary.md'}" if "summary" in report.tables else "")
    )
    return report


def draw_sweep(report: Report, data, sweep: pd.Series, colors, stem: str = "") -> None:
    """A sweep's own figures: its trials' beta curves, and Optuna's history and importances,
    rebuilt from the MLflow runs (the Optuna database may be out of reach here)."""
    name = str(sweep["sweep"])
    stem = stem or f"sweep_{safe(name)}"
    report.draw(f"{stem}_beta", beta.plot, data.sweep_trials(name), colors)
    try:
        study = sweeps.study_from_runs(sweep, data.runs)
    except Skip as reason:
        report.skip(stem, str(reason))
        return
    for kind, figure in SWEEP_FIGURES.items():
        report.draw(f"{stem}_{kind}", figure, study)


def safe(name: str) -> str:
    """A dataset or study name as a file-name part."""
    return re.sub(r"[^\w.-]+", "-", name).strip("-") or "unnamed"
