"""Sweeps stopped by signals, for real: SIGTERM (what a scheduler sends) to `harness sweep
--workers 2`, Ctrl-C to its whole process group, Ctrl-C to a one-worker sweep while its trial
loads data, and SIGKILL to a sweep. Every trial, trial run and parent run ends, or, where
nothing could end it, is ended by the next command."""

from __future__ import annotations

import os
import signal
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from harness.commands.sweep import STOP_SECONDS
from tests.faults.helpers import error_lines, start_harness, wait_for_line

pytestmark = pytest.mark.slow

# Trials that train until stopped (100000 steps), each on its own point of the space.
SWEEP = """
from harness import Choice, DataSpec, EvalSpec, Experiment, Sweep, TrainSpec
BASE = Experiment(name="base", method="dpo", beta=0.1, dataset="sentiment",
    data=DataSpec(max_pairs=None),
    train=TrainSpec(steps=100000, batch_size=8, eval_every=0, log_every=1),
    eval=EvalSpec(n_prompts=8, n_pairs=16, max_new_tokens=8))
STOPPED = Sweep(name="stopped", base=BASE, n_trials=4, pruner="none",
    space={"beta": Choice([0.1, 0.2, 0.3, 0.4])})
"""


def start_sweep(tmp_path, *extra: str, group: bool = False):
    (tmp_path / "sweeps.py").write_text(SWEEP)
    stores = (f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}")
    args = ["sweep", f"{tmp_path / 'sweeps.py'}:STOPPED", "--storage", stores[0]]
    process = start_harness(*args, "--tracking-uri", stores[1], *extra, cwd=tmp_path, group=group)
    return process, stores


def wait_until_training(process, workers: list[str], timeout: float = 600) -> None:
    """Read stdout until each worker (by its line prefix) has evaluated its step 0."""
    waiting, deadline = set(workers), time.monotonic() + timeout
    while waiting:
        line = wait_for_line(process, "step    0/", timeout=deadline - time.monotonic())[-1]
        waiting -= {w for w in waiting if line.startswith(w)}


def what_is_left(stores) -> tuple[dict, list, object]:
    """(trial states by number, the trial runs, the parent run)."""
    study = optuna.load_study(study_name="stopped", storage=stores[0])
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    client = MlflowClient(stores[1])
    experiment = client.get_experiment_by_name("stopped")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("role") == "sweep_parent"]
    return trials, [r for r in runs if r.data.tags.get("role") == "trial"], parent


def check_all_ended(stores, stopped: int) -> tuple[list, object]:
    """No trial or run left RUNNING; the `stopped` interrupted trials FAIL, each with one
    WAITING retry; their runs KILLED and tagged FAIL; the parent run KILLED."""
    trials, runs, parent = what_is_left(stores)
    failed = [n for n, t in trials.items() if t.state == TrialState.FAIL]
    retries = [t.system_attrs.get("failed_trial") for t in trials.values()]
    assert not [n for n, t in trials.items() if t.state == TrialState.RUNNING], trials
    assert len(failed) == stopped and sorted(failed) == sorted(r for r in retries if r is not None)
    assert {r.info.status for r in runs} == {"KILLED"} and len(runs) >= 1
    assert {r.data.tags.get("trial_state") for r in runs} == {"FAIL"}
    assert parent.info.status == "KILLED", parent.info.status
    return failed, runs


@pytest.mark.parametrize("how", ["SIGTERM to the parent", "SIGINT to the process group"])
def test_two_worker_sweep_stopped(tmp_path, how, record_property):
    process, stores = start_sweep(tmp_path, "--workers", "2", group=True)
    wait_until_training(process, ["[w0] ", "[w1] "])
    time.sleep(2)  # both train
    sent = time.monotonic()
    if how.startswith("SIGTERM"):
        process.send_signal(signal.SIGTERM)
    else:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal
    _, err = process.communicate(timeout=STOP_SECONDS + 300)  # a loaded machine is slow
    seconds = time.monotonic() - sent
    lines = error_lines(err)
    assert "Traceback" not in err, err[-3000:]
    parents = [line for line in lines if not line.startswith("harness: [w")]
    assert len(parents) == 1 and "parent run" in parents[0] and "marked KILLED" in parents[0], err
    assert len(lines) <= 3, err  # one line at most per process
    assert process.returncode == 130
    failed, runs = check_all_ended(stores, stopped=2)
    record_property("fault", f"{how} of `harness sweep --workers 2` while both workers train")
    record_property("seen", f"exit 130 after {seconds:.0f} s, {len(lines)} lines: {parents[0]}")
    record_property(
        "kept",
        f"trials {failed} FAIL with one WAITING retry each, their {len(runs)} runs KILLED "
        "(trial_state FAIL), the parent run KILLED; none left RUNNING",
    )


def test_one_worker_sweep_interrupted_while_its_trial_loads_data(tmp_path, record_property):
    process, stores = start_sweep(tmp_path)
    wait_for_line(process, "data: loading")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=600)
    lines = error_lines(err)
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert process.returncode == 130
    assert "trial 1" not in out, "the worker went on to the next trial"
    trials, runs, parent = what_is_left(stores)
    assert trials[0].state == TrialState.FAIL and trials[4].system_attrs["failed_trial"] == 0
    assert not [n for n, t in trials.items() if t.state == TrialState.RUNNING], trials
    assert {r.info.status for r in runs} <= {"KILLED"}  # no run, or one KILLED
    assert parent.info.status == "KILLED"
    record_property("fault", "SIGINT to a one-worker `harness sweep` while its trial loads data")
    record_property("seen", f"exit 130: {lines[0]}")
    record_property(
        "kept", "trial 0 FAIL with one WAITING retry, no next trial started, parent run KILLED"
    )


def test_sigkilled_sweep_parent_run_is_reaped_by_the_next_command(tmp_path, record_property):
    from harness.infra.stores import open_store

    process, stores = start_sweep(tmp_path)
    wait_for_line(process, "step    0/")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    _, _, parent = what_is_left(stores)
    assert parent.info.status == "RUNNING", "nothing could end it"
    said = []
    open_store(stores[1], log=said.append)  # what every harness command does first
    _, runs, parent = what_is_left(stores)
    assert parent.info.status == "KILLED" and {r.info.status for r in runs} == {"KILLED"}
    assert any(parent.info.run_id in line and "marked KILLED" in line for line in said), said
    record_property("fault", "SIGKILL to `harness sweep` while its trial trains")
    record_property("seen", f"the next command printed {len(said)} lines, e.g. {said[0]}")
    record_property("kept", "the parent run and the trial run KILLED by the next command")
