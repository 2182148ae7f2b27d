"""Several processes creating the same new MLflow SQLite store at once all succeed.

MLflow creates its tables on the first connect without a lock; two processes doing so at once
collide in its migrations (`duplicate column name: step`). `harness.stores.open_store` holds a
file lock around that first connect."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.faults.helpers import harness_env

OPEN_AT = """
import sys, time
from harness.stores import use_tracking
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
late = time.time() - start
use_tracking(sys.argv[1], "race")  # what `harness run` does first: open, create the experiment
print(f"{late:.3f}")
"""


@pytest.mark.slow
@pytest.mark.parametrize("attempt", [1, 2])
def test_processes_creating_a_new_store_at_once_all_succeed(tmp_path, attempt, record_property):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start = time.time() + 15  # every process imported and waiting before the start
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT, uri, str(start)],
            env=harness_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=300) for p in processes]
    codes = [p.returncode for p in processes]
    assert codes == [0, 0, 0], [err[-1500:] for _, err in results]
    late = [float(out.strip()) for out, _ in results]
    # MLflow's table creation takes seconds: processes starting within 2 s of each other race
    assert max(late) < 2, f"not at once (seconds late: {late}): the race was not exercised"
    record_property(
        "fault", f"3 processes create one new SQLite store at the same instant (try {attempt})"
    )
    record_property("seen", f"exit 0 from all three (started within {max(late):.3f} s)")
    record_property("kept", "one store, its tables created once, one MLflow experiment 'race'")
