"""Several processes creating the same new MLflow SQLite store at once all succeed.

MLflow creates its tables on the first connect without a lock; two processes doing so at once
collide in its migrations (`duplicate column name: step`). `harness.infra.stores.open_store` holds a
file lock around that first connect, and `use_tracking` survives a concurrent creation of the
same MLflow experiment."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.helpers import preloaded_processes


def open_at(uri: str, barrier: Path, name: str, results) -> None:
    """One process: ready, then at the others' instant what `harness run` does first (open the
    store, create the experiment); the time it went, or its error."""
    try:
        (barrier / name).touch()
        while len(list(barrier.iterdir())) < 3:  # a barrier: go when all three are ready
            time.sleep(0.001)
        went = time.time()
        from harness.infra.stores import use_tracking

        use_tracking(uri, "race")
        results.put((name, went, None))
    except BaseException as err:
        results.put((name, None, f"{type(err).__name__}: {err}"))


@pytest.mark.slow
@pytest.mark.parametrize("attempt", [1, 2])
def test_processes_creating_a_new_store_at_once_all_succeed(tmp_path, attempt, record_property):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    barrier = tmp_path / "ready"
    barrier.mkdir()
    context = preloaded_processes("harness.infra.stores", __name__)
    results = context.Queue()
    processes = [
        context.Process(target=open_at, args=(uri, barrier, str(i), results)) for i in range(3)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    errors = [error for _, _, error in outcomes if error]
    assert not errors and [p.exitcode for p in processes] == [0, 0, 0], errors
    went = [when for _, when, _ in outcomes]
    spread = max(went) - min(went)
    # MLflow's table creation takes seconds: processes starting this close together race
    assert spread < 1, f"not at once ({spread:.3f} s apart): the race was not exercised"
    record_property(
        "fault", f"3 processes create one new SQLite store at the same instant (try {attempt})"
    )
    record_property("seen", f"exit 0 from all three (started {spread:.3f} s apart)")
    record_property("kept", "one store, its tables created once, one MLflow experiment 'race'")
