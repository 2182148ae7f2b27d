"""Several processes creating the same new MLflow SQLite store at once all succeed.

MLflow creates its tables on the first connect without a lock; two processes doing so at once
collide in its migrations (`duplicate column name: step`). `harness.infra.stores.open_store` holds a
file lock around that first connect, and `use_tracking` survives a concurrent creation of the
same MLflow experiment."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.faults.helpers import harness_env

OPEN_AT = """
import sys, time
from pathlib import Path
from harness.infra.stores import use_tracking
folder, name = Path(sys.argv[2]), sys.argv[3]
(folder / name).touch()  # imported: ready
while len(list(folder.iterdir())) < 3:  # a barrier: go when all three are ready
    time.sleep(0.001)
print(time.time())
use_tracking(sys.argv[1], "race")  # what `harness run` does first: open, create the experiment
"""


@pytest.mark.slow
@pytest.mark.parametrize("attempt", [1, 2])
def test_processes_creating_a_new_store_at_once_all_succeed(tmp_path, attempt, record_property):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    barrier = tmp_path / "ready"
    barrier.mkdir()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT, uri, str(barrier), str(i)],
            env=harness_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = [p.communicate(timeout=600) for p in processes]
    codes = [p.returncode for p in processes]
    assert codes == [0, 0, 0], [err[-1500:] for _, err in results]
    went = [float(out.split()[0]) for out, _ in results]  # (then: the cache line, if built)
    spread = max(went) - min(went)
    # MLflow's table creation takes seconds: processes starting this close together race
    assert spread < 1, f"not at once ({spread:.3f} s apart): the race was not exercised"
    record_property(
        "fault", f"3 processes create one new SQLite store at the same instant (try {attempt})"
    )
    record_property("seen", f"exit 0 from all three (started {spread:.3f} s apart)")
    record_property("kept", "one store, its tables created once, one MLflow experiment 'race'")
