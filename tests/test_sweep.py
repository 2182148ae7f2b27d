"""Optuna sweeps for real: SQLite Optuna storage, SQLite MLflow, tiny DPO trials."""

import json
import os
import subprocess
import sys
import textwrap
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from harness import (
    Choice,
    EvalSpec,
    Experiment,
    Grid,
    LogUniform,
    Sweep,
    SweepError,
    TrainSpec,
    Uniform,
    When,
)
from harness.commands.cli import main
from harness.commands.sweep import load_sweeps
from harness.config import tags as tag
from harness.infra.stores import POLICY_MODEL_TAG
from harness.methods.checks import check_sweep
from harness.run.sweep.study import StudySettings, claim_trial, open_storage, prepare_study
from harness.run.sweep.trial import run_trial

TINY = dict(
    method="dpo",
    beta=0.1,
    dataset="sentiment",
    train=TrainSpec(steps=4, batch_size=4, eval_every=2, save_policy=False),
    eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8),
)
# No train.save_policy: `harness sweep` turns it off for trials (commands/sweep.TRIAL_DEFAULTS).
DEFINITIONS = """
from harness import Choice, EvalSpec, Experiment, LogUniform, Sweep, TrainSpec
BASE = Experiment(method="dpo", beta=0.1, dataset="sentiment",
                  train=TrainSpec(steps={steps}, batch_size=4, eval_every={every}),
                  eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8))
SWEEP = Sweep(name="{name}", base=BASE, space={{"method": Choice(["dpo", "ipo"]), "beta": LogUniform(0.05, 1.0)}},
              n_trials={trials}, seeds={seeds}, pruner="none")
"""


def write_sweep(tmp_path, name="study", steps=4, every=0, trials=4, seeds=(0,)):
    path = tmp_path / f"{name}.py"
    path.write_text(
        textwrap.dedent(
            DEFINITIONS.format(name=name, steps=steps, every=every, trials=trials, seeds=seeds)
        )
    )
    return path


def trials_of(storage: str, name: str):
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def child_runs(uri: str, experiment: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "sweep_parent"]
    assert len(parents) == 1
    children = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'"
    )
    return parents[0], children


# ---- validation before any trial ----------------------------------------------------------------


@pytest.mark.parametrize(
    "space, kwargs, message",
    [
        ({"train.lrr": Uniform(0.1, 1)}, {}, r"unknown experiment field 'train.lrr'.*'train.lr'"),
        ({}, {}, "space is empty"),
        ({"beta": Uniform(1.0, 0.5)}, {}, r"space\['beta'\]: low must be < high"),
        (
            {"train.lr": LogUniform(0.0, 1e-3)},
            {},
            r"space\['train.lr'\]: a log scale needs positive bounds",
        ),
        (
            {"method": Choice(["dpo", "dpx"])},
            {},
            r"space\['method'\] value 'dpx'.*Did you mean 'dpo'",
        ),
        (
            {"beta": Uniform(0.1, 1)},
            {"objective": "eval/gold/rewrd"},
            r"objective 'eval/gold/rewrd' is not logged.*Did you mean 'eval/gold/reward'",
        ),
        (
            {"beta": Grid([0.1, 0.2])},
            {"sampler": "grid", "n_trials": 3},
            "n_trials=3 exceeds the 2 grid points",
        ),
        (
            {"beta": Grid([0.1, 0.2]), "train.lr": Uniform(1e-4, 1e-3)},
            {"sampler": "grid"},
            "needs sampler='grid' and Grid",
        ),
        (
            {"method_args.label_smoothing": When({"method": "cdpo"}, Uniform(0, 0.4))},
            {},
            "condition on 'method', which the space does not sample",
        ),
        (
            {"beta": Uniform(0.1, 1)},
            {"pruner": "medain"},
            "pruner must be one of.*Did you mean 'median'",
        ),
    ],
)
def test_bad_sweeps_fail_before_any_trial(space, kwargs, message):
    """Refused at construction (structure) or by the checks step `harness sweep` runs (names)."""
    with pytest.raises(SweepError, match=message):
        check_sweep(Sweep(name="s", base=Experiment(**TINY), space=space, **kwargs))


def test_conditional_space_samples_only_where_it_applies():
    from harness.config.space import sample_params

    sweep = Sweep(
        name="c",
        base=Experiment(**TINY),
        n_trials=12,
        sampler="random",
        space={
            "method": Choice(["dpo", "cdpo"]),
            "method_args.label_smoothing": When({"method": "cdpo"}, Uniform(0.0, 0.4)),
        },
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        params = sample_params(sweep, study.ask())
        assert ("method_args.label_smoothing" in params) == (params["method"] == "cdpo")
        sweep.experiment_for(params, seed=0)  # a valid experiment either way


def test_unreachable_storage_is_named_before_any_trial(tmp_path, tracking, capsys):
    path = write_sweep(tmp_path)
    assert (
        main(
            [
                "sweep",
                str(path),
                "--storage",
                "sqlite:////nonexistent/dir/o.db",
                "--tracking-uri",
                tracking,
            ]
        )
        == 2
    )
    assert "storage 'sqlite:////nonexistent/dir/o.db' is unreachable" in capsys.readouterr().err


def test_database_errors_are_one_line_with_the_password_masked(
    tmp_path, tracking, capsys, monkeypatch
):
    path = write_sweep(tmp_path)
    url = "postgresql://harness:hunter2@127.0.0.1:9/optuna"  # nothing listens on port 9
    args = ["sweep", str(path), "--storage", url, "--tracking-uri", tracking]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "storage 'postgresql://harness:***@127.0.0.1:9/optuna' is unreachable" in err
    assert "hunter2" not in err and len(err.splitlines()) == 1
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as on a machine without the extra
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "needs the database driver 'psycopg': pip install -e '.[postgres]'" in err
    assert "hunter2" not in err and len(err.splitlines()) == 1


def test_trials_skip_saving_the_policy_unless_set(tmp_path, capsys):
    path = write_sweep(tmp_path)  # its base leaves train.save_policy at the TrainSpec default
    assert load_sweeps(str(path), [], None)[0][0].base.train.save_policy is False
    saved = load_sweeps(str(path), ["train.save_policy=true"], None)[0][0]
    assert saved.base.train.save_policy is True
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert "train.save_policy=False" in " ".join(capsys.readouterr().out.split())


# ---- studies -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sweep_logs_nested_runs_and_resumes_without_repeating(tmp_path, tracking):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    path = write_sweep(tmp_path, trials=3)
    args = ["sweep", str(path), "--storage", storage, "--tracking-uri", tracking]
    assert main(args) == 0
    trials = trials_of(storage, "study")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    parent, children = child_runs(tracking, "study")
    assert sorted(int(r.data.tags["trial"]) for r in children) == [0, 1, 2]
    assert {r.data.tags["trial_state"] for r in children} == {"COMPLETE"}
    assert {"space.method", "space.beta", "sampler", "pruner"} <= set(parent.data.params)
    assert parent.data.tags["optuna_storage"] == storage and parent.info.status == "FINISHED"
    best = min(trials, key=lambda t: -t.value)
    assert parent.data.tags["best_trial"] == str(best.number)
    for run in children:  # the full experiment's params, with the trial's values
        trial = trials[int(run.data.tags["trial"])]
        assert (
            run.data.params["method"] == trial.params["method"]
            and float(run.data.params["beta"]) == trial.params["beta"]
        )
        assert run.data.params["train.steps"] == "4" and "eval/gold/reward" in run.data.metrics
        assert run.data.params["train.save_policy"] == "false"  # the sweep default
        assert POLICY_MODEL_TAG not in run.data.tags
        method, beta = trial.params["method"], trial.params["beta"]
        assert run.info.run_name == f"study-t{trial.number}-{method}-b{beta:g}-s0"
    assert json.loads(parent.data.params["space.method"]) == {"choice": ["dpo", "ipo"]}
    # every trial after the first shares the reference and data: its log-probs come from the cache
    assert {
        r.data.tags.get(tag.REFERENCE_CACHE) for r in children if r.data.tags["trial"] != "0"
    } == {"hit"}

    assert main(args) == 0  # the same command again: the study is complete, nothing reruns
    assert len(trials_of(storage, "study")) == 3
    assert main([*args, "--trials", "4"]) == 0  # a larger budget runs only the difference
    assert [t.state for t in trials_of(storage, "study")] == [TrialState.COMPLETE] * 4
    assert len(child_runs(tracking, "study")[1]) == 4


@pytest.mark.slow
def test_seeds_are_averaged_and_their_spread_logged(tmp_path, tracking):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert (
        main(
            [
                "sweep",
                str(write_sweep(tmp_path, trials=1, seeds=(0, 1))),
                "--storage",
                storage,
                "--tracking-uri",
                tracking,
            ]
        )
        == 0
    )
    (trial,) = trials_of(storage, "study")
    _, children = child_runs(tracking, "study")
    per_seed = {r.data.tags["seed"]: r.data.metrics["eval/gold/reward"] for r in children}
    assert sorted(per_seed) == ["0", "1"]
    assert trial.user_attrs["seed_values"] == [per_seed["0"], per_seed["1"]]
    assert trial.value == pytest.approx((per_seed["0"] + per_seed["1"]) / 2)
    assert trial.user_attrs["objective_std"] == pytest.approx(
        abs(per_seed["0"] - per_seed["1"]) / 2**0.5
    )


@pytest.mark.slow
def test_two_workers_run_the_budget_exactly_once(tmp_path, tracking, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    path = write_sweep(tmp_path, trials=4)
    # With several workers the registries' checks run in a process of the workers' forkserver:
    # a bad name is still one line and exit 2, before any study or run exists.
    where = ["--storage", storage, "--tracking-uri", tracking]
    assert main(["sweep", f"{path}:SWEEP", "--workers", "2", "--set", "method=dpx", *where]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'dpx'" in err[0] and "Did you mean 'dpo'" in err[0], err
    assert not (tmp_path / "optuna.db").exists()
    assert (
        main(
            [
                "sweep",
                f"{path}:SWEEP",
                "--workers",
                "2",
                "--storage",
                storage,
                "--tracking-uri",
                tracking,
            ]
        )
        == 0
    )
    trials = trials_of(storage, "study")
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    _, children = child_runs(tracking, "study")
    assert sorted(int(r.data.tags["trial"]) for r in children) == [0, 1, 2, 3]


def trial_has_trained(uri: str, experiment: str, trial: int) -> bool:
    """True once the MLflow run of `trial` has logged a training loss: its worker is mid-training."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return False
    runs = client.search_runs([exp.experiment_id], f"tags.trial = '{trial}'")
    return any("train/loss" in run.data.metrics for run in runs)


@pytest.mark.slow
def test_killed_worker_is_failed_retried_once_and_the_budget_completes(tmp_path, tracking):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    path = write_sweep(tmp_path, steps=40, every=10, trials=2)
    args = [
        "sweep",
        str(path),
        "--storage",
        storage,
        "--tracking-uri",
        tracking,
        "--heartbeat-interval",
        "1",
        "--grace-period",
        "4",
    ]
    worker = subprocess.Popen(
        [sys.executable, "-m", "harness.commands.cli", *args],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill it in the middle of its second trial: once that trial has logged a training loss, with
    # most of its 40 steps, its evaluations and its scoring still ahead (a fixed sleep was racy).
    deadline = time.time() + 300
    while time.time() < deadline and not trial_has_trained(tracking, "study", 1):
        time.sleep(0.2)
    assert worker.poll() is None, "the worker ended before its second trial trained"
    assert [t.state for t in trials_of(storage, "study")][:2] == [
        TrialState.COMPLETE,
        TrialState.RUNNING,
    ]
    worker.kill()  # SIGKILL: no cleanup of any kind
    worker.wait()
    assert main(args) == 0
    trials = trials_of(storage, "study")
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[2].params == trials[1].params  # trial 2 is trial 1 retried once
    _, children = child_runs(tracking, "study")
    by_trial = {r.data.tags["trial"]: r for r in children}
    assert (
        by_trial["1"].info.status == "KILLED" and by_trial["1"].data.tags["trial_state"] == "FAIL"
    )
    assert by_trial["2"].data.tags["retry_of"] == "1" and by_trial["2"].info.status == "FINISHED"
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2  # the budget, no duplicate


@pytest.mark.slow
def test_pruned_trial_stops_training_at_the_eval(tmp_path, tracking):
    sweep = Sweep(
        name="prune",
        base=Experiment(
            **{
                **TINY,
                "train": TrainSpec(
                    steps=8, batch_size=4, eval_every=2, log_every=1, save_policy=False
                ),
            }
        ),
        space={"beta": Uniform(0.05, 1.0)},
        objective="eval/kl",
        direction="minimize",
        n_trials=1,
    )
    settings = StudySettings(
        storage=f"sqlite:///{tmp_path / 'o.db'}",
        study_name="prune",
        n_trials=1,
        tracking_uri=tracking,
        mlflow_experiment="prune",
    )
    study, parent = prepare_study(sweep, settings)
    study.pruner = optuna.pruners.ThresholdPruner(
        upper=-1.0
    )  # any KL >= 0 is over: prune at the first eval
    claim = claim_trial(study, open_storage(settings), sweep, settings)
    assert run_trial(sweep, study, claim, settings, parent, log=lambda _: None) == TrialState.PRUNED
    (run,) = child_runs(tracking, "prune")[1]
    client = MlflowClient(tracking)
    assert run.info.status == "FINISHED" and run.data.tags["pruned"].startswith("true (step 2)")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval/kl")] == [0, 2]
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "train/loss")) <= 2


@pytest.mark.slow
def test_non_finite_loss_fails_the_trial_and_the_sweep_goes_on(tmp_path, tracking):
    path = tmp_path / "nan.py"
    path.write_text(
        textwrap.dedent("""
        from harness import Choice, EvalSpec, Experiment, Sweep, TrainSpec
        NAN = Sweep(name="nan", n_trials=4, sampler="random", pruner="none",
                    base=Experiment(method="dpo", beta=0.1, dataset="sentiment",
                                    train=TrainSpec(steps=4, batch_size=4, eval_every=0, log_every=1, save_policy=False),
                                    eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8)),
                    space={"train.lr": Choice([1e6, 1e-4])})  # 1e6 blows the weights up within a few steps
    """)
    )
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    assert main(["sweep", str(path), "--storage", storage, "--tracking-uri", tracking]) == 0
    trials = trials_of(storage, "nan")
    assert {t.params["train.lr"] for t in trials} == {1e6, 1e-4}, "sampler seed 0 draws both values"
    for t in trials:
        if t.params["train.lr"] == 1e6:
            assert t.state == TrialState.FAIL, t
            assert t.user_attrs["error"].startswith("TrainingDiverged:")
            assert "became non-finite" in t.user_attrs["error"]
        else:
            assert t.state == TrialState.COMPLETE
    _, children = child_runs(tracking, "nan")
    failed = [r for r in children if r.data.params["train.lr"] == "1000000.0"]
    assert failed and all(
        r.info.status == "FAILED" and "TrainingDiverged" in r.data.tags["error"] for r in failed
    )


def test_world_specific_objectives_are_accepted_where_the_world_logs_them():
    exact = Experiment(method="dpo", beta=0.1, dataset="exact", eval=EvalSpec(max_new_tokens=5))
    check_sweep(
        Sweep(
            name="gap",
            base=exact,
            space={"beta": LogUniform(0.05, 1.0)},
            objective="eval/frontier_gap",
            direction="minimize",
        )
    )
    with pytest.raises(
        SweepError, match="objective 'eval/frontier_gap' is not logged by dpo runs on 'sentiment'"
    ):
        check_sweep(
            Sweep(
                name="gap",
                base=Experiment(**TINY),
                space={"beta": LogUniform(0.05, 1.0)},
                objective="eval/frontier_gap",
            )
        )


@pytest.mark.slow
def test_a_trial_failing_before_its_run_tags_no_other_run(tmp_path, tracking):
    """A combination the recipe rejects before its run starts fails that trial alone: its error
    is the real one, and no other trial's run is re-tagged with its state."""
    path = tmp_path / "toolong.py"
    path.write_text(
        textwrap.dedent("""
        from harness import Choice, EvalSpec, Experiment, Sweep, TrainSpec
        LONG = Sweep(name="toolong", n_trials=4, sampler="random", pruner="none",
                     base=Experiment(method="dpo", beta=0.1, dataset="sentiment",
                                     train=TrainSpec(steps=2, batch_size=4, eval_every=0, save_policy=False),
                                     eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8)),
                     space={"train.max_length": Choice([64, 100000])})  # beyond the model's context
    """)
    )
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    assert main(["sweep", str(path), "--storage", storage, "--tracking-uri", tracking]) == 0
    trials = trials_of(storage, "toolong")
    failed = [t for t in trials if t.params["train.max_length"] == 100000]
    assert failed and len(failed) < len(trials), "sampler seed 0 draws both values"
    for t in failed:
        assert t.state == TrialState.FAIL
        assert t.user_attrs["error"].startswith("SpecError: train.max_length"), t.user_attrs
    _, children = child_runs(tracking, "toolong")
    assert len(children) == len(trials) - len(failed), "a rejected trial starts no run"
    assert all(r.data.tags["trial_state"] == "COMPLETE" for r in children)
