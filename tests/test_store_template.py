"""A new SQLite store copied from the verified empty one is the store MLflow would have made."""

from __future__ import annotations

import contextlib
import sqlite3

from mlflow.tracking import MlflowClient

from harness.infra.store_template import seed_new_store
from harness.infra.stores import open_store


def schema(path) -> tuple[list, list]:
    """(every table's and index's definition, the schema revision MLflow records). A definition
    is its SQL's lines without order: MLflow's table-rebuilding migrations write a table's
    constraints in set order, which differs between two stores that MLflow itself migrated."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    lines = (sorted(line.strip().rstrip(",") for line in sql.splitlines()) for (sql,) in rows)
    return sorted(lines), revision


def test_a_seeded_store_matches_one_migrated_by_mlflow(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the Default experiment's artifacts: ./mlruns, from here
    migrated, seeded = tmp_path / "migrated.db", tmp_path / "seeded.db"
    mlflow_made = MlflowClient(f"sqlite:///{migrated}")
    mlflow_made.search_experiments()
    lines: list[str] = []
    ours = open_store(f"sqlite:///{seeded}", log=lines.append)
    assert sum("building mlflow-schema" in line for line in lines) == 1  # once per MLflow version

    assert schema(seeded) == schema(migrated)
    assert seed_new_store(tmp_path / "third.db", log=lines.append)  # a copy, not a migration
    assert schema(tmp_path / "third.db") == schema(migrated)
    (default,) = ours.search_experiments()
    (expected,) = mlflow_made.search_experiments()
    assert (default.experiment_id, default.name) == (expected.experiment_id, expected.name)
    assert default.artifact_location == expected.artifact_location
    assert ours.create_experiment("next") == mlflow_made.create_experiment("next") == "1"


def test_a_store_that_exists_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}"
    client = open_store(uri, log=lambda line: None)
    client.create_experiment("kept")
    assert not seed_new_store(store, log=print)  # a second process that arrives late
    assert [e.name for e in MlflowClient(uri).search_experiments()] == ["kept", "Default"]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".new")] == []
