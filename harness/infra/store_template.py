"""New SQLite tracking stores copied from a verified empty one instead of migrated from nothing.

MLflow creates a new SQLite store by running every one of its schema migrations, in every
process that creates one: 2.55 s against the harness's 1.00 s on the 2-core machine (median of
7 alternating, `benchmarks/bench_store.py`, results/benchmarks/store.md); most of the harness's
second is importing MLflow's SQL store, which opening any store pays. The harness builds the
empty store once per MLflow version, with MLflow's own migrations, in the build cache (verified
by checksum whenever it is read, rebuilt when broken), and gives each new store a copy of it.

The copy holds no experiment: MLflow creates its Default experiment on first open, as it does
for a store it migrated itself, so its artifact location follows the opening process's folder.
MLflow still checks the copy's schema revision against its own on every open.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from importlib.metadata import version
from pathlib import Path

from harness.infra.cache import cached_dir

KIND = "mlflow-schema"
FILE = "mlflow.db"


def build_empty_store(folder: Path) -> None:
    """An MLflow store migrated by MLflow, with the Default experiment it adds taken out."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = folder / FILE
    store = SqlAlchemyStore(f"sqlite:///{path}", (folder / "mlruns").as_uri())
    store.engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DELETE FROM experiments")  # only the Default one, this folder's
    shutil.rmtree(folder / "mlruns", ignore_errors=True)


def empty_store(log=print) -> Path:
    """The verified empty store for the installed MLflow (built on first use)."""
    settings = {"mlflow": version("mlflow"), "sqlalchemy": version("sqlalchemy")}
    return cached_dir(KIND, settings, build_empty_store, log=log) / FILE


def seed_new_store(db: Path, log=print) -> bool:
    """Give `db`, a SQLite store that does not exist yet, the empty store's tables; False where
    it exists by now (another process made it) or cannot be linked into place (then MLflow
    migrates it as usual). The copy appears whole or not at all: written beside `db`, then
    hard-linked to its name, which never replaces a file."""
    if db.exists():
        return False
    template = empty_store(log)
    fd, tmp = tempfile.mkstemp(dir=db.parent, prefix=f".{db.name}.", suffix=".new")
    os.close(fd)
    try:
        shutil.copyfile(template, tmp)
        try:
            os.link(tmp, db)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            return False
        return True
    finally:
        os.unlink(tmp)
