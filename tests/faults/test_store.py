"""Several processes creating the same new MLflow SQLite store at once all succeed.

MLflow creates its tables on the first connect without a lock; two processes doing so at once
collide in its migrations (`duplicate column name: step`). `harness.infra.stores.open_store` holds a
file lock around that first connect, and `use_tracking` survives a concurrent creation of the
same MLflow experiment."""

from __future__ import annotations

import time

import pytest

from tests.faults.helpers import run_together


def open_at(uri: str, barrier, results) -> None:
    """One process: at the others' instant, what `harness run` does first (open the store,
    create the experiment); the time it went, or its error."""
    try:
        from harness.infra.stores import use_tracking

        barrier.wait(timeout=120)
        went = time.time()
        use_tracking(uri, "race")
        results.put((went, None))
    except BaseException as err:
        results.put((None, f"{type(err).__name__}: {err}"))


@pytest.mark.slow
@pytest.mark.parametrize("attempt", [1, 2])
def test_processes_creating_a_new_store_at_once_all_succeed(tmp_path, attempt, record_property):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    outcomes, codes = run_together(open_at, (uri,), 3, ("harness.infra.stores", __name__))
    errors = [error for _, error in outcomes if error]
    assert not errors and codes == [0, 0, 0], errors
    went = [when for when, _ in outcomes]
    spread = max(went) - min(went)
    # MLflow's table creation takes seconds: processes starting this close together race
    assert spread < 1, f"not at once ({spread:.3f} s apart): the race was not exercised"
    record_property(
        "fault", f"3 processes create one new SQLite store at the same instant (try {attempt})"
    )
    record_property("seen", f"exit 0 from all three (started {spread:.3f} s apart)")
    record_property("kept", "one store, its tables created once, one MLflow experiment 'race'")
