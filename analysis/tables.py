"""The summary table: one row per configuration, the seed mean and 95% CI of the main metrics.

A configuration is a set of runs whose params agree on everything but `train.seed` and `name`:
a method at one beta, or one trial of a sweep. Rows show dataset, method, beta and every
other param that takes two or more values across rows. Written as CSV (numbers, CI bounds in
their own columns), Markdown and LaTeX (mean +- half-width of the interval).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.load import RunData
from analysis.stats import mean_ci
from harness.config.metrics import (
    EVAL_GOLD_REWARD,
    EVAL_GOLD_REWARD_EXACT,
    EVAL_KL,
    EVAL_KL_EXACT,
    EVAL_PAIR_ACCURACY,
    TRAIN_COMPLETIONS,
    TRAIN_TOKENS,
    parse_winrate,
)

METRICS = {
    EVAL_GOLD_REWARD: "gold reward",
    EVAL_GOLD_REWARD_EXACT: "gold reward (exact)",
    EVAL_KL: "KL",
    EVAL_KL_EXACT: "KL (exact)",
    EVAL_PAIR_ACCURACY: "pair acc.",
    TRAIN_COMPLETIONS: "completions seen",  # the budget: methods compared see the same
    TRAIN_TOKENS: "tokens seen",
}
NOT_CONFIGURATION = {"params.train.seed", "params.name"}  # runs differing only here are seeds
ALWAYS = ["dataset", "method", "beta"]


def metric_keys(runs: pd.DataFrame) -> list[str]:
    """The table's metrics that some run logged: METRICS in order, then headline win rates."""
    logged = {c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.")}
    winrates = sorted(k for k in logged if (parsed := parse_winrate(k)) and parsed[2] is None)
    return [k for k in METRICS if k in logged] + winrates


def title(key: str) -> str:
    parsed = parse_winrate(key)
    return f"win rate {parsed[0]} vs {parsed[1]}" if parsed else METRICS[key]


def summary(data: RunData) -> pd.DataFrame:
    """One row per configuration: labels, n (seeds), then metric, metric_ci_low, metric_ci_high."""
    runs = data.runs
    if runs.empty:
        return pd.DataFrame()
    params = sorted(
        c for c in runs.columns if c.startswith("params.") and c not in NOT_CONFIGURATION
    )
    keyed = runs.assign(**{c: runs[c].fillna("") for c in params})
    groups = keyed.groupby(["dataset", *params], sort=False)
    shown = [
        c
        for c in params
        if c not in ("params.method", "params.beta", "params.dataset")
        and runs[c].dropna().nunique() > 1
    ]
    metrics = metric_keys(runs)
    rows = []
    for _, group in groups:
        first = group.iloc[0]
        row = {"dataset": first["dataset"], "method": first["method"], "beta": first["beta"]}
        row |= {c.removeprefix("params."): first[c] for c in shown}
        row["n"] = len(group)
        for key in metrics:
            row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = mean_ci(group[f"metrics.{key}"])
        rows.append(row)
    labels = ALWAYS + [c.removeprefix("params.") for c in shown]
    return pd.DataFrame(rows).sort_values(labels, ignore_index=True, key=_natural)


def _natural(column: pd.Series) -> pd.Series:
    """Sort numbers as numbers even when a param column holds them as text."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().all() else column.astype(str)


def write(table: pd.DataFrame, out: Path, stem: str = "summary") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.tex"]
    table.to_csv(paths[0], index=False, float_format="%.6g", lineterminator="\n")
    header, cells, n_labels = formatted(table)
    paths[1].write_text(markdown(header, cells, n_labels))
    paths[2].write_text(latex(header, cells, n_labels))
    return paths


def formatted(table: pd.DataFrame) -> tuple[list[str], list[list[str]], int]:
    """Column titles, cell strings (metrics as mean ± CI half-width), number of label columns."""
    metrics = [c for c in table.columns if f"{c}_ci_low" in table]
    labels = [
        c for c in table.columns if c not in metrics and not c.endswith(("_ci_low", "_ci_high"))
    ]
    header = labels + [title(k) for k in metrics]
    cells = []
    for _, row in table.iterrows():
        line = [_label(row[c]) for c in labels]
        line += [_estimate(row[k], row[f"{k}_ci_low"], row[f"{k}_ci_high"]) for k in metrics]
        cells.append(line)
    return header, cells, len(labels)


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _estimate(mean: float, low: float, high: float) -> str:
    if pd.isna(mean):
        return "–"
    if pd.isna(low):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {(high - low) / 2:.3f}"


def markdown(header: list[str], cells: list[list[str]], n_labels: int) -> str:
    """Labels left-aligned, estimates right-aligned."""
    align = "l" * n_labels + "r" * (len(header) - n_labels)
    return "".join(line + "\n" for line in markdown_lines(header, cells, align))


def markdown_lines(header: list[str], cells: list[list[str]], align: str) -> list[str]:
    """The one Markdown table writer: `align` is "l" or "r" per column (as in LaTeX); a `|` in a
    cell is escaped and a newline becomes a space, so a cell never breaks its row."""
    rule = [":--" if a == "l" else "--:" for a in align]
    rows = [
        [_markdown_cell(c) for c in header],
        rule,
        *([_markdown_cell(c) for c in r] for r in cells),
    ]
    return ["| " + " | ".join(row) + " |" for row in rows]


def _markdown_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "_": r"\_",
    "%": r"\%",
    "&": r"\&",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "–": "--",
}


def latex(header: list[str], cells: list[list[str]], n_labels: int) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); wrap it in your own table float."""

    def escape(text: str) -> str:
        return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)

    align = "l" * n_labels + "r" * (len(header) - n_labels)
    rows = [" & ".join(escape(c) for c in row) + r" \\" for row in [header, *cells]]
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", rows[0], r"\midrule", *rows[1:]]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"]) + "\n"
