"""Offline, project-local caches for every test; a shared tracking store per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Set before any library import: nothing in the tests may reach the hub or write to $HOME.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", str(ROOT / "results/cache/hf"))
os.environ.setdefault("MPLCONFIGDIR", str(ROOT / "results/cache/matplotlib"))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
# One thread per process: `make test` runs two workers on two cores, and each torch's own thread
# pool over-subscribed the cores (the suite took twice as long; SLURM jobs and subprocesses of the
# tests inherit it too).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Built worlds are reused across test sessions (and with `make demo`): building one is the slow part.
os.environ.setdefault("HARNESS_CACHE", str(ROOT / "results/cache"))


@pytest.fixture(autouse=True)
def no_exported_mlflow_experiment():
    """mlflow.set_experiment exports the experiment's id (MLFLOW_EXPERIMENT_ID), which runs are
    created in; a test that chose another leaves it as it found it (a later test's subprocess
    would inherit an id that means another experiment in its own store)."""
    before = os.environ.get("MLFLOW_EXPERIMENT_ID")
    yield
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    if before is not None:
        os.environ["MLFLOW_EXPERIMENT_ID"] = before


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A fresh MLflow SQLite store for one test; returns its URI."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # its Default experiment
    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="module")
def module_tracking(tmp_path_factory, request):
    """One MLflow SQLite store shared by a module's tests (creating one costs ~3 s of CPU), with
    an MLflow experiment named after the module made active; returns the store's URI."""
    import mlflow

    from harness.infra.stores import use_tracking

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    use_tracking(uri, request.module.__name__.rsplit(".", 1)[-1])
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


# `make test` hands whole files to its two workers (--dist loadfile --no-loadscope-reorder) in
# collection order: the longest files go first so that the workers finish together (a long file
# handed out last ran on alone). Seconds of one file with the worlds cached, measured together.
LONGEST_FIRST = (
    "test_slurm.py",  # ~120 s, SLURM jobs
    "test_paper_runner.py",  # ~65 s
    "faults/test_sweep_signals.py",  # ~70 s
    "faults/test_servers.py",  # ~60 s
    "test_sweep.py",  # ~60 s
    "test_sweep_postgres.py",  # ~55 s
    "faults/test_runs.py",  # ~50 s
    "test_processes.py",  # ~45 s, two-process runs
    "test_best_of_n_run.py",  # ~40 s
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    tests = Path(__file__).parent
    items.sort(key=lambda item: rank.get(item.path.relative_to(tests).as_posix(), len(rank)))
