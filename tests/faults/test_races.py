"""Races between processes: several runs of one experiment writing the same thing at the same
instant, for real (separate processes released together by a barrier), on SQLite and on
PostgreSQL behind a real `mlflow server`.

MLflow looks a dataset up, then inserts it: two runs logging the same dataset together both
insert, and one breaks the datasets' primary key. Measured without the harness's retry
(`stores.retry_collisions`): 3 to 11 of the 36 logs failed in each test, in every run."""

from __future__ import annotations

import pytest

from tests.faults.helpers import run_together
from tests.servers import postgres_with_mlflow_server, skip_without_postgres

ROUNDS = 12  # each round a new dataset (a new digest), logged by every process at once
PROCESSES = 3


def log_same_dataset(uri: str, experiment_id: str, barrier, rounds: int, source: str) -> list:
    """One process: its own run, then `rounds` times the round's dataset, in step with the
    other processes; the error of each round that failed (None where it worked)."""
    from mlflow.tracking import MlflowClient

    from harness.infra import stores

    client = MlflowClient(uri)
    errors = []
    run_id = client.create_run(experiment_id).info.run_id
    for round_ in range(rounds):
        rows = [
            {"prompt": f"round {round_} row {i}", "chosen": "a", "rejected": "b"} for i in range(4)
        ]
        barrier.wait(timeout=120)
        try:
            stores.log_dataset_inputs(client, run_id, "pairs", source, {"train": rows}, hub=False)
            errors.append(None)
        except Exception as err:
            errors.append(f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")
    client.set_terminated(run_id)
    return errors


def _worker(uri, experiment_id, rounds, source, barrier, results):
    try:
        results.put(log_same_dataset(uri, experiment_id, barrier, rounds, source))
    except BaseException as err:  # a broken barrier or store: the test says which
        results.put([f"worker crashed: {type(err).__name__}: {err}"] * rounds)


def race(uri: str, tmp_path) -> tuple[list[list], str]:
    """PROCESSES processes logging the same dataset at once, ROUNDS times: their errors, and the
    experiment they logged to."""
    from mlflow.tracking import MlflowClient

    from harness.infra.stores import open_store

    open_store(uri)
    experiment_id = MlflowClient(uri).create_experiment(f"race-{tmp_path.name}")
    source = str(tmp_path / "pairs.jsonl")
    args = (uri, experiment_id, ROUNDS, source)
    outcomes, _ = run_together(_worker, args, PROCESSES, ("harness.infra.stores", __name__))
    return outcomes, experiment_id


def check_no_round_failed(raced, uri, record_property, where: str) -> None:
    from mlflow.tracking import MlflowClient

    outcomes, experiment_id = raced
    failed = [e for errors in outcomes for e in errors if e is not None]
    record_property(
        "fault",
        f"{PROCESSES} processes log the same dataset at the same instant, {ROUNDS} rounds, {where}",
    )
    record_property("seen", f"{len(failed)} of {PROCESSES * ROUNDS} logs failed")
    assert not failed, failed[:3]
    client = MlflowClient(uri)
    runs = client.search_runs([experiment_id])
    assert len(runs) == PROCESSES
    for run in runs:  # every run holds every round's dataset, once
        assert len(run.inputs.dataset_inputs) == ROUNDS
    record_property("kept", f"each of the {PROCESSES} runs holds all {ROUNDS} datasets")


def test_same_dataset_logged_at_once_on_sqlite(tmp_path, record_property):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    check_no_round_failed(race(uri, tmp_path), uri, record_property, "SQLite")


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    skip_without_postgres()
    with postgres_with_mlflow_server(tmp_path_factory.mktemp("server"), ("mlflow",)) as servers:
        yield servers


@pytest.mark.slow
def test_same_dataset_logged_at_once_behind_a_server(tmp_path, tracking_server, record_property):
    check_no_round_failed(
        race(tracking_server.url, tmp_path),
        tracking_server.url,
        record_property,
        "PostgreSQL behind `mlflow server`",
    )


@pytest.mark.slow
def test_same_dataset_logged_at_once_on_postgresql(tmp_path, tracking_server, record_property):
    uri = f"{tracking_server.base}/mlflow"  # the same database, as a direct tracking URI
    check_no_round_failed(race(uri, tmp_path), uri, record_property, "PostgreSQL")
