"""Optuna sweeps: optimization history and parameter importances, from the study's storage.

Sweeps are found through their MLflow parent runs (tags role=sweep_parent, sweep=<study name>,
optuna_storage=<storage URL>); the plots are Optuna's own (optuna.visualization.matplotlib),
resized to column width.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pandas as pd
from matplotlib.text import Text

from analysis.figures import Plot, Skip
from analysis.style import COLUMN_WIDTH

FONT_SIZE = 7
IMPORTANCE_SEED = 0  # fANOVA fits a random forest: a fixed seed gives the same bars every time


def load_study(sweep: str, storage: str) -> optuna.Study:
    if not sweep or not storage:
        raise Skip("its parent run lacks the sweep or optuna_storage tag")
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        raise Skip(f"no Optuna storage at {storage}")
    try:
        study = optuna.load_study(study_name=sweep, storage=storage)
    except KeyError:
        raise Skip(f"no study {sweep!r} in {storage}") from None
    if len(study.directions) > 1:
        raise Skip("multi-objective study: pick an objective in Optuna's own plots")
    return study


def completed(study: optuna.Study) -> pd.DataFrame:
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return pd.DataFrame([{"trial": t.number, "value": t.value, **t.params} for t in trials])


def history(study: optuna.Study) -> Plot:
    trials = completed(study)
    if trials.empty:
        raise Skip("no completed trial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
    ax.set_xlabel("trial")
    ax.legend(loc="best")  # Optuna puts it outside the axes, which squeezes a column figure
    return Plot(fit_to_column(ax, f"{study.study_name}: optimization history"), trials)


def importances(study: optuna.Study) -> Plot:
    trials = completed(study)
    varied = [p for p in trials.columns if p not in ("trial", "value") and trials[p].nunique() > 1]
    if len(trials) < 2 or not varied:
        raise Skip("importances need two completed trials and a parameter that varied")
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
    values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
        )
    table = pd.DataFrame({"param": list(values), "importance": list(values.values())})
    return Plot(fit_to_column(ax, f"{study.study_name}: parameter importances"), table)


def fit_to_column(ax, title: str):
    """Optuna draws 6.4 x 4.8 in figures with 10-12 pt text; shrink both for a paper column."""
    ax.set_title("")  # Optuna's generic titles, centred or left
    ax.set_title(title, loc="left")
    fig = ax.figure
    fig.set_size_inches(COLUMN_WIDTH, 2.6)
    for text in fig.findobj(Text):
        text.set_fontsize(FONT_SIZE)
    fig.set_layout_engine("constrained")
    return fig
