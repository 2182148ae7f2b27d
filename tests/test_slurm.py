"""`--launcher slurm` for real: a single-node SLURM (munged, slurmctld, slurmd) started by the
tests, PostgreSQL and an `mlflow server` as a cluster would share them, tiny DPO trials.

The jobs run `sys.executable` with this process's environment (sbatch exports it), so they see
the same PYTHONPATH, offline HF_* settings and results cache as the tests.
"""

import os
import shutil
import subprocess
import textwrap
import time
from types import SimpleNamespace

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from harness.commands.cli import main
from harness.infra import databases
from harness.infra.stores import POLICY_MODEL_TAG
from tests.servers import mlflow_server, postgres, why_postgres_cannot_run
from tests.slurm_cluster import slurm_cluster, why_slurm_cannot_run

pytestmark = pytest.mark.slow
SYSTEM_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin"

DEFINITIONS = """
from harness import EvalSpec, Experiment, Grid, Sweep, TrainSpec
BASE = Experiment(method="dpo", beta=0.1, dataset="sentiment",
                  train=TrainSpec(steps={steps}, batch_size=4, eval_every={every}, save_policy=False),
                  eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8))
GRID = Sweep(name="{name}", base=BASE, sampler="grid", n_trials={trials}, pruner="none",
             space={{"beta": Grid([0.1, 0.2, 0.4, 0.8][:{trials}])}})
ONE = BASE.replace({{"name": "one", "train.save_policy": True}})
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """SLURM, PostgreSQL (Optuna's storage) and an MLflow server on PostgreSQL, for the module."""
    for reason in (why_slurm_cannot_run(), why_postgres_cannot_run()):
        if reason:
            pytest.skip(reason)
    folder = tmp_path_factory.mktemp("cluster")
    started = time.monotonic()
    with (
        slurm_cluster() as conf,
        postgres() as (base, _),
        mlflow_server(f"{base}/mlflow", folder / "artifacts", folder / "mlflow.log") as url,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("SLURM_CONF", str(conf))
        env.setenv("TQDM_DISABLE", "1")
        env.chdir(folder)  # the jobs' logs go to results/slurm/ of the working folder
        print(f"cluster and servers up in {time.monotonic() - started:.1f} s")
        yield SimpleNamespace(optuna=f"{base}/optuna", url=url, folder=folder)


def definitions(tmp_path, name: str, steps: int = 2, every: int = 0, trials: int = 4):
    path = tmp_path / f"{name}.py"
    path.write_text(
        textwrap.dedent(DEFINITIONS.format(name=name, steps=steps, every=every, trials=trials))
    )
    return path


def sweep_command(path, storage: str, url: str, *extra: str) -> list[str]:
    return ["sweep", f"{path}:GRID", "--launcher", "slurm", "--workers", "2"] + [
        "--storage",
        storage,
        "--tracking-uri",
        url,
        *extra,
    ]


def runs_of(url: str, experiment: str):
    client = MlflowClient(url)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    parents = [r for r in runs if r.data.tags.get("role") == "sweep_parent"]
    return parents, [r for r in runs if r.data.tags.get("role") == "trial"]


def squeue() -> list[str]:
    # By full path: one test empties PATH to check the launcher's message.
    out = subprocess.run(
        [shutil.which("squeue", path=SYSTEM_PATH), "--noheader", "--format", "%i"],
        capture_output=True,
        text=True,
    )
    return out.stdout.split()


def optuna_storage(storage: str):
    """What a researcher passes to Optuna to read the study: the URL, or the journal file."""
    journal = databases.journal_path(storage)
    return JournalStorage(JournalFileBackend(str(journal))) if journal else storage


def assert_swept_once(storage: str, url: str, name: str) -> None:
    study = optuna.load_study(study_name=name, storage=optuna_storage(storage))
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert sorted(t.params["beta"] for t in trials) == [0.1, 0.2, 0.4, 0.8]  # each point once
    parents, children = runs_of(url, name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(r.data.tags["trial"]) for r in children) == [0, 1, 2, 3]
    assert {r.info.status for r in children} == {"FINISHED"}


def test_two_workers_as_a_job_array_run_a_grid_sweep_once(cluster, tmp_path, capsys):
    path = definitions(tmp_path, "array")
    assert main(sweep_command(path, cluster.optuna, cluster.url, "--wait")) == 0
    out = capsys.readouterr().out
    assert "submitted 2 sweep worker(s) as SLURM job array" in out
    assert "squeue --jobs" in out and "results/slurm/" in out and cluster.url in out
    assert "trials finished 4/4" in out and "best: trial" in out
    assert_swept_once(cluster.optuna, cluster.url, "array")


def test_journal_storage_runs_the_same_sweep_once(cluster, tmp_path, capsys):
    storage = f"journal:{tmp_path / 'optuna.journal'}"
    path = definitions(tmp_path, "journal")
    assert main(sweep_command(path, storage, cluster.url, "--wait")) == 0
    assert "trials finished 4/4" in capsys.readouterr().out
    assert_swept_once(storage, cluster.url, "journal")


def trial_training(url: str, experiment: str) -> int:
    """How many trial runs have logged a training loss (their worker is mid-training)."""
    client = MlflowClient(url)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'")
    return sum("train/loss" in r.data.metrics for r in runs)


def pending_reason(job: str) -> str:
    """Why SLURM keeps `job` pending ("" once it runs or is gone)."""
    out = subprocess.run(
        [shutil.which("squeue", path=SYSTEM_PATH), "--noheader", "--states=PENDING"]
        + ["--jobs", job, "--format", "%r"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_a_cancelled_worker_has_its_trial_retried_and_its_run_killed(cluster, tmp_path, capsys):
    path = definitions(tmp_path, "cancel", steps=60, every=20, trials=3)
    beats = ["--heartbeat-interval", "1", "--grace-period", "20"]
    assert main(sweep_command(path, cluster.optuna, cluster.url, *beats)) == 0  # returns at once
    array = next(
        line.split()[-1] for line in capsys.readouterr().out.splitlines() if "job array" in line
    )
    array = array.rstrip(":")
    wait_for(lambda: trial_training(cluster.url, "cancel") == 2, 300, "two trials training")
    subprocess.run(["scancel", f"{array}_0"], check=True)  # SIGTERM, SIGKILL after KillWait
    wait_for(lambda: not squeue(), 300, "the other worker did not finish the budget")

    trials = optuna.load_study(study_name="cancel", storage=cluster.optuna).get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 3
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    retry = trials[-1]
    assert retry.params == failed.params and retry.state == TrialState.COMPLETE
    parents, children = runs_of(cluster.url, "cancel")
    by_trial = {int(r.data.tags["trial"]): r for r in children}
    killed = by_trial[failed.number]
    assert killed.info.status == "KILLED" and killed.data.tags["trial_state"] == "FAIL"
    assert killed.data.tags["error"].startswith("interrupted")  # ended by its own worker
    assert by_trial[retry.number].data.tags["retry_of"] == str(failed.number)
    assert by_trial[retry.number].info.status == "FINISHED"
    assert parents[0].info.status == "FINISHED"
    assert not [r for r in children if r.info.status == "RUNNING"]


def test_a_preempted_worker_is_requeued_and_its_trial_retried_once(cluster, tmp_path, capsys):
    """SIGUSR2 is what SLURM sends before preemption and the time limit (submitit's --signal):
    the worker's job is checkpointed and requeued, its run ends KILLED, its trial is retried."""
    path = definitions(tmp_path, "preempt", steps=60, every=20, trials=3)
    beats = ["--heartbeat-interval", "1", "--grace-period", "20"]
    assert main(sweep_command(path, cluster.optuna, cluster.url, *beats)) == 0
    array = next(
        line.split()[-1] for line in capsys.readouterr().out.splitlines() if "job array" in line
    ).rstrip(":")
    wait_for(lambda: trial_training(cluster.url, "preempt") == 2, 300, "two trials training")
    subprocess.run(["scancel", "--signal=USR2", f"{array}_0"], check=True)
    wait_for(lambda: pending_reason(f"{array}_0") == "BeginTime", 120, "the job was not requeued")
    # SLURM holds a requeued job for about two minutes (its begin time) before it may start
    # again; a researcher waits, the test lets it start at once.
    subprocess.run(["scontrol", "update", f"JobId={array}_0", "StartTime=now"], check=True)
    wait_for(lambda: not squeue(), 600, "the workers did not finish the budget")

    # A requeued job keeps its id: both attempts write to the same log files.
    (log,) = (cluster.folder / "results" / "slurm").rglob(f"{array}_0_*log.err")
    assert "DUE TO JOB REQUEUE" in log.read_text()
    assert "Job completed successfully" in log.with_suffix(".out").read_text()
    trials = optuna.load_study(study_name="preempt", storage=cluster.optuna).get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 3
    parents, children = runs_of(cluster.url, "preempt")
    ended = sorted((r.info.status, r.data.tags.get("error", "")) for r in children)
    assert [status for status, _ in ended] == ["FINISHED"] * 3 + ["KILLED"], ended
    assert parents[0].info.status == "FINISHED"


def test_harness_run_on_slurm_gives_one_finished_run_with_its_policy(cluster, tmp_path, capsys):
    path = definitions(tmp_path, "single")
    command = ["run", f"{path}:ONE", "--launcher", "slurm", "--tracking-uri", cluster.url]
    assert main([*command, "--mlflow-experiment", "single", "--wait"]) == 0
    out = capsys.readouterr().out
    assert "one: job " in out and "runs finished 1/1" in out
    client = MlflowClient(cluster.url)
    experiment = client.get_experiment_by_name("single")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "one"
    assert run.data.tags[POLICY_MODEL_TAG].startswith("models:/")
    assert "eval/kl" in run.data.metrics


@pytest.mark.parametrize(
    "change, message",
    [
        ({"path": ""}, "needs SLURM's `sbatch` on PATH.*--launcher local"),
        (
            {"slurm": "partiton=debug"},
            r"'partiton' is not a submitit parameter; accepted: .*partition",
        ),
        ({"slurm": "partition=gpu"}, "SLURM refuses the job.*invalid partition"),
        ({"slurm": "time=soon"}, r"time='soon': expected int"),
        ({"storage": "sqlite:///optuna.db"}, "SQLite file.*each open their own file.*PostgreSQL"),
        ({"storage": "journal:optuna.journal"}, "a relative path"),
        ({"storage": "postgresql://harness@127.0.0.1:9/optuna"}, "storage .* is unreachable"),
        ({"tracking": "sqlite:////shared/mlflow.db"}, "--tracking-uri .* SQLite.*MLflow server"),
        ({"tracking": "http://127.0.0.1:9"}, "--tracking-uri http://127.0.0.1:9 is unreachable"),
    ],
)
def test_bad_input_is_one_line_before_anything_is_submitted(
    cluster, tmp_path, capsys, monkeypatch, change, message
):
    import re

    path = definitions(tmp_path, "bad")
    storage = change.get("storage", f"journal:{tmp_path / 'optuna.journal'}")
    command = sweep_command(path, storage, change.get("tracking", cluster.url))
    if "slurm" in change:
        command += ["--slurm", change["slurm"]]
    if "path" in change:
        monkeypatch.setenv("PATH", str(tmp_path))
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not squeue()
    assert not (tmp_path / "optuna.journal").exists() or "storage" in change
