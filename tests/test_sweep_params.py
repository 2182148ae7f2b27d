"""Distinct parameters per trial, grid points once, masked credentials: Optuna on SQLite, no
training (trials are told a made-up value), so these run in seconds."""

import dataclasses

import pytest
from optuna.trial import TrialState

from harness import Choice, EvalSpec, Experiment, Grid, LogUniform, Sweep, TrainSpec
from harness.config.space import finite_points, sample_params
from harness.infra.databases import StoreError, check_driver, mask, redact
from harness.infra.locations import mlflow_ui_hint
from harness.run.sweep.study import StudySettings, claim_trial, open_storage, prepare_study

BASE = Experiment(
    method="dpo",
    beta=0.1,
    dataset="sentiment",
    train=TrainSpec(steps=4, batch_size=4, save_policy=False),
    eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8),
)


@pytest.fixture
def tracking(module_tracking):
    return module_tracking  # one MLflow store for the module: creating one costs seconds


def settings_for(tmp_path, tracking, name, n_trials):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return StudySettings(
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        study_name=name,
        n_trials=n_trials,
        tracking_uri=tracking,
        mlflow_experiment=name,
    )


def run_budget(sweep, settings) -> list[dict]:
    """Claim every waiting trial and tell it its beta as the value."""
    study, _ = prepare_study(sweep, settings)
    storage = open_storage(settings)
    while (claimed := claim_trial(study, storage, sweep, settings)) is not None:
        trial = claimed.trial
        params = sample_params(sweep, trial)
        study.tell(trial, float(params["beta"]))
    trials = study.get_trials(deepcopy=False)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    return [t.params for t in trials]


def test_discrete_space_gets_every_point_once_before_any_repeat(tmp_path, tracking):
    """TPE (the default) proposes its best point again and again on a small discrete space."""
    space = {"method": Choice(["dpo", "ipo", "kto"]), "beta": Choice([0.1, 0.5])}
    sweep = Sweep(name="discrete", base=BASE, space=space, n_trials=8, pruner="none")
    params = run_budget(sweep, settings_for(tmp_path, tracking, "discrete", 8))
    keys = [(p["method"], p["beta"]) for p in params]
    assert len(set(keys[:6])) == 6  # the whole space of 6 points before anything repeats
    assert set(keys) == {(m, b) for m in ("dpo", "ipo", "kto") for b in (0.1, 0.5)}


def test_continuous_space_trials_differ_and_replay_the_same_study(tmp_path, tracking):
    space = {"method": Choice(["dpo", "ipo"]), "beta": LogUniform(0.05, 1.0)}
    sweep = Sweep(name="cont", base=BASE, space=space, n_trials=5, pruner="none")
    first = run_budget(sweep, settings_for(tmp_path / "a", tracking, "cont", 5))
    again = run_budget(sweep, settings_for(tmp_path / "b", tracking, "cont2", 5))
    assert len({p["beta"] for p in first}) == 5
    assert first == again  # seeds derive from sampler_seed and the trial number only


def test_grid_runs_each_point_once_and_a_larger_budget_adds_the_rest(tmp_path, tracking):
    space = {"method": Grid(["dpo", "ipo"]), "beta": Grid([0.1, 0.2, 0.4])}
    sweep = Sweep(name="grid", base=BASE, space=space, sampler="grid", n_trials=4, pruner="none")
    settings = settings_for(tmp_path, tracking, "grid", 4)
    first = run_budget(sweep, settings)
    assert len({tuple(sorted(p.items())) for p in first}) == 4
    full = run_budget(
        dataclasses.replace(sweep, n_trials=6), dataclasses.replace(settings, n_trials=6)
    )
    assert sorted(tuple(sorted(p.items())) for p in full) == sorted(
        tuple(sorted(p.items())) for p in finite_points(sweep)
    )


def test_passwords_are_masked_and_redacted():
    url = "postgresql://harness:s3cr%40t@db.example:5432/optuna"
    assert mask(url) == "postgresql://harness:***@db.example:5432/optuna"
    assert mask("sqlite:///results/optuna.db") == "sqlite:///results/optuna.db"
    text = f"could not open {url}: password s3cr@t refused (s3cr%40t)"
    assert "s3cr" not in redact(text, url) and "harness:***@db.example" in redact(text, url)


def test_missing_driver_is_one_line_naming_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed
    with pytest.raises(StoreError) as err:
        check_driver("postgresql://u:secret@127.0.0.1/optuna", "storage")
    message = str(err.value)
    assert "'psycopg'" in message and ".[postgres]" in message and "secret" not in message
    assert "\n" not in message
    check_driver("sqlite:///x.db", "storage")  # the standard library's driver


def test_closing_hint_fits_the_kind_of_tracking_uri():
    assert mlflow_ui_hint("http://127.0.0.1:5056").startswith("open http://127.0.0.1:5056")
    assert " ui --backend-store-uri sqlite:///results/mlflow.db" in mlflow_ui_hint(
        "sqlite:///results/mlflow.db"
    )
    assert "***" in mlflow_ui_hint("postgresql://u:pw@h/mlflow")
    assert "pw@" not in mlflow_ui_hint("https://u:pw@mlflow.example")
