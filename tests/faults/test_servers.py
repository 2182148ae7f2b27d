"""Servers going away: a tracking URI where nothing listens, an `mlflow server` killed while a
run trains, the Optuna database (a real PostgreSQL) stopped while a sweep trial trains. What
can be ended is ended; what cannot is named in one line and ended by the next command."""

from __future__ import annotations

import time

import pytest

from harness.infra.locations import free_port
from tests.faults.helpers import assert_one_line, experiment_file, start_harness, wait_for_line

pytestmark = pytest.mark.slow

SECRET = "pw/with#odd"


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_tracking_uri_where_nothing_listens(tmp_path, command, record_property):
    uri = f"http://harness:{SECRET}@127.0.0.1:{free_port()}"
    target = experiment_file(tmp_path, "nobody")
    if command == "sweep":
        target.write_text(
            target.read_text()
            + "from harness import Choice, Sweep\n"
            + "SWEEP = Sweep(name='nobody', base=EXP, n_trials=1, space={'beta': Choice([0.1])})\n"
        )
        target = f"{target}:SWEEP"
    started = time.monotonic()
    process = start_harness(command, str(target), "--tracking-uri", uri, cwd=tmp_path)
    out, err = process.communicate(timeout=600)
    seconds = time.monotonic() - started
    line = assert_one_line(err, "tracking URI http://harness:***@127.0.0.1", "no server answers")
    assert process.returncode == 2, err[-2000:]
    assert "with#odd" not in out + err
    # MLflow alone retried for 258 s; the probe answers in seconds (imports included).
    assert seconds < 90, f"{seconds:.0f} s"
    record_property("fault", f"`harness {command}` with a tracking URI where nothing listens")
    record_property("seen", f"exit 2 after {seconds:.0f} s: {line}")
    record_property("kept", "nothing started: no data or model loaded, no Optuna study created")


SWEEP = """
from harness import Choice, DataSpec, EvalSpec, Experiment, Sweep, TrainSpec
BASE = Experiment(name="base", method="dpo", beta=0.1, dataset="sentiment",
    data=DataSpec(max_pairs=None),
    train=TrainSpec(steps=STEPS, batch_size=8, eval_every=0, log_every=10, save_policy=False),
    eval=EvalSpec(n_prompts=8, n_pairs=16, max_new_tokens=8))
LOST = Sweep(name="lost", base=BASE, n_trials=2, pruner="none", space={"beta": Choice([0.1, 0.2])})
"""


def test_optuna_database_stopped_while_a_trial_trains(tmp_path, record_property):
    from mlflow.tracking import MlflowClient

    from tests.servers import postgres_server, skip_without_postgres

    skip_without_postgres()
    (tmp_path / "sweeps.py").write_text(SWEEP.replace("STEPS", "80"))
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow stays reachable
    with postgres_server(("optuna",)) as server:
        storage = f"{server.base}/optuna"
        process = start_harness(
            "sweep", f"{tmp_path / 'sweeps.py'}:LOST", "--storage", storage,
            "--tracking-uri", tracking, cwd=tmp_path,
        )  # fmt: skip
        wait_for_line(process, "step    0/")
        server.stop()  # while the trial trains (80 steps)
        out, err = process.communicate(timeout=600)
    masked = storage.replace(server.password, "***")
    line = assert_one_line(err, f"Optuna storage {masked}", "during trial 0", "marked KILLED")
    assert process.returncode == 2 and server.password not in out + err
    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name("lost").experiment_id])
    (parent,) = [r for r in runs if r.data.tags["role"] == "sweep_parent"]
    (trained,) = [r for r in runs if r.data.tags["role"] == "trial"]
    assert trained.info.status == "FINISHED" and trained.data.tags["final_step"] == "80"
    assert parent.info.status == "KILLED"
    record_property("fault", "the sweep's Optuna PostgreSQL stopped while a trial trains")
    record_property("seen", f"exit 2: {line}")
    record_property(
        "kept", "the trial's run FINISHED at its last step; the parent run KILLED (MLflow up)"
    )


def test_mlflow_server_killed_while_a_run_trains(tmp_path, record_property):
    import os
    import signal

    from mlflow.tracking import MlflowClient

    from harness.infra.stores import open_store
    from tests.servers import mlflow_server_process

    backend = f"sqlite:///{tmp_path / 'backend.db'}"
    exp = experiment_file(tmp_path, "orphan", steps=100000, log_every=1)
    with mlflow_server_process(backend, tmp_path / "served", tmp_path / "server.log") as (url, pid):
        process = start_harness("run", str(exp), "--tracking-uri", url, cwd=tmp_path)
        wait_for_line(process, "step    0/")
        os.killpg(pid.pid, signal.SIGKILL)  # the server and its workers, mid-run
        killed = time.monotonic()
        _, err = process.communicate(timeout=600)
    seconds = time.monotonic() - killed
    line = assert_one_line(err, "orphan", "could not be ended", url, "stopped answering")
    assert process.returncode == 2
    client = MlflowClient(backend)
    (run,) = client.search_runs([client.get_experiment_by_name("orphan").experiment_id])
    assert run.info.run_id in line and run.info.status == "RUNNING", "nothing could end it"
    said = []
    open_store(backend, log=said.append)  # the next command on the store (server restarted)
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    assert any(run.info.run_id in s and "marked KILLED" in s for s in said), said
    record_property("fault", "the `mlflow server` killed (SIGKILL) while `harness run` trains")
    record_property("seen", f"exit 2, {seconds:.0f} s after the kill: {line}")
    record_property("kept", "the run (left RUNNING) marked KILLED by the next command")
