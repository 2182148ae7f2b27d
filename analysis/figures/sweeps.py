"""Optuna sweeps: optimization history, parameter importances and parallel coordinates, drawn
from MLflow alone.

Sweeps are found through their MLflow parent runs (tags role=sweep_parent, sweep=<study
name>; params direction and space.<key>, which `harness.config.space.space_from_params` reads
back into the sweep's distributions). Each trial's runs carry the trial's number, state,
value (mean over seeds) and sampled parameters as tags, so the study is rebuilt in memory from
them: the Optuna storage, which may be a database this machine cannot reach, is never opened.
The plots are Optuna's own (optuna.visualization.matplotlib), resized to column width.
"""

from __future__ import annotations

import json
import warnings

import optuna
import pandas as pd
from matplotlib.text import Text
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from analysis.figures import Plot, Skip
from analysis.style import COLUMN_WIDTH
from harness.config import tags as tag
from harness.config.space import (
    IntUniform,
    LogUniform,
    SweepError,
    Uniform,
    When,
    space_from_params,
)

FONT_SIZE = 7
IMPORTANCE_SEED = 0  # fANOVA fits a random forest: a fixed seed gives the same bars every time


def study_from_runs(sweep: pd.Series, runs: pd.DataFrame) -> optuna.Study:
    """The sweep's completed and pruned trials as an in-memory study, numbered as they ran."""
    role, trial = f"tags.{tag.ROLE}", f"tags.{tag.TRIAL}"
    if role not in runs or trial not in runs:
        raise Skip("no finished trial runs in MLflow")
    mine = runs[
        (runs["experiment"] == sweep["experiment"])
        & (runs[f"tags.{tag.SWEEP}"] == sweep["sweep"])
        & (runs[role] == tag.ROLE_TRIAL)
    ]
    if mine.empty:
        raise Skip("no finished trial runs in MLflow")
    try:
        space = space_from_params(json.loads(sweep["space"] or "{}"))
    except SweepError as err:  # e.g. a parent run logged by a harness older than the JSON format
        raise Skip(f"the parent run's space cannot be read: {err}") from None
    firsts = mine.assign(number=mine[trial].astype(int)).groupby("number").first()
    params = {n: trial_params(row, space) for n, row in firsts.iterrows()}
    distributions = infer_distributions(space, params.values())
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created in memory"
    study = optuna.create_study(study_name=str(sweep["sweep"]), direction=sweep["direction"])
    for number, row in firsts.iterrows():
        state = optuna.trial.TrialState[row.get(f"tags.{tag.TRIAL_STATE}", "COMPLETE")]
        if state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue
        value = float(row[f"tags.{tag.TRIAL_VALUE}"]) if state.name == "COMPLETE" else None
        trial_distributions = {k: distributions[k] for k in params[number]}
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value,
                params=params[number],
                distributions=trial_distributions,
                user_attrs={"trial": number},
            )
        )
    return study


def trial_params(row: pd.Series, space: dict) -> dict:
    """The trial's sampled values: its trial_params tag, or (runs of older harness versions)
    the space keys' run params, numbers parsed."""
    tagged = row.get(f"tags.{tag.TRIAL_PARAMS}")
    if isinstance(tagged, str):
        return json.loads(tagged)
    out = {}
    for key, dist in space.items():
        text = row.get(f"params.{key}")
        if isinstance(text, str):
            number = int if isinstance(_unwrapped(dist), IntUniform) else float
            try:
                out[key] = number(text) if isinstance(_unwrapped(dist), Uniform) else text
            except ValueError:
                out[key] = text
    return out


def infer_distributions(space: dict, trials) -> dict:
    """Optuna distributions per key: the space's bounds for numeric entries (Uniform, LogUniform,
    IntUniform), else the values seen."""
    values: dict[str, list] = {}
    for params in trials:
        for key, value in params.items():
            values.setdefault(key, []).append(value)
    out = {}
    for key, seen in values.items():
        dist = _unwrapped(space.get(key))
        if isinstance(dist, Uniform) and all(isinstance(v, int | float) for v in seen):
            low, high = min(dist.low, *seen), max(dist.high, *seen)
            if isinstance(dist, IntUniform):
                out[key] = IntDistribution(int(low), int(high), log=dist.log)
            else:
                out[key] = FloatDistribution(low, high, log=isinstance(dist, LogUniform))
        else:
            out[key] = CategoricalDistribution(sorted(set(seen), key=repr))
    return out


def _unwrapped(dist):
    """The distribution a conditional entry (`When`) samples where it applies."""
    return dist.distribution if isinstance(dist, When) else dist


def completed(study: optuna.Study) -> pd.DataFrame:
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return pd.DataFrame(
        [{"trial": t.user_attrs["trial"], "value": t.value, **t.params} for t in trials]
    )


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
    if trials["value"].nunique() < 2:  # fANOVA has nothing to apportion (and raises)
        raise Skip("importances need trials whose objective values differ")
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
    values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
        )
    table = pd.DataFrame({"param": list(values), "importance": list(values.values())})
    return Plot(fit_to_column(ax, f"{study.study_name}: parameter importances"), table)


def parallel(study: optuna.Study) -> Plot:
    trials = completed(study)
    if len(trials) < 2 or len(trials.columns) < 3:
        raise Skip("parallel coordinates need two completed trials and a parameter")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_parallel_coordinate(study)
    # Optuna adds an axis per parameter and a colour bar: constrained layout cannot place them.
    figure = fit_to_column(ax, f"{study.study_name}: parallel coordinates", layout="tight")
    return Plot(figure, trials)


def fit_to_column(ax, title: str, layout: str = "constrained"):
    """Optuna draws 6.4 x 4.8 in figures with 10-12 pt text; shrink both for a paper column."""
    ax.set_title("")  # Optuna's generic titles, centred or left
    ax.set_title(title, loc="left")
    fig = ax.figure
    fig.set_size_inches(COLUMN_WIDTH, 2.6)
    for text in fig.findobj(Text):
        text.set_fontsize(FONT_SIZE)
    fig.set_layout_engine(layout)
    return fig
