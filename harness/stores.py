"""Where runs go: the one MLflow tracking-URI resolver, experiment set-up, run provenance, and
the database URLs that Optuna and MLflow share (drivers, masked passwords, locks).

No training code here: `analysis` resolves its store with the same functions.

Several workers, on one machine or many, may open one database at the same instant. Optuna and
MLflow create their schema on first connect and race when two do it at once, and a study's
budget and parent run must be created once. `exclusive` serialises such steps with a lock held
by the database server itself (a PostgreSQL advisory lock, released when its connection ends,
so a killed worker never leaves it held), or by a file lock beside a SQLite file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import filelock
import mlflow
import sqlalchemy
from mlflow.tracking import MlflowClient
from sqlalchemy.pool import NullPool

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
DEFAULT_OPTUNA_STORAGE = "sqlite:///results/optuna.db"
POLICY_ARTIFACT = "policy"  # the trained policy's folder among a run's artifacts
# A database driver's Python module -> what to install for it.
DRIVER_PACKAGES = {
    "psycopg": "-e '.[postgres]'  (or: pip install 'psycopg[binary]')",
    "psycopg2": "psycopg2-binary",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
}
SERVER_SCHEMES = ("http", "https", "databricks")  # tracking URIs that name a server, not a store


class StoreError(ValueError):
    """A store that cannot be used; the message shows its URL with the password masked."""


def mask(url: str) -> str:
    """`url` with its password, if it has one, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def redact(text: str, *urls: str) -> str:
    """`text` with each URL of `urls` masked and its password (raw or decoded) replaced by ***."""
    for url in urls:
        password = urlsplit(url).password
        if password:
            text = text.replace(url, mask(url))
            for secret in {password, unquote(password)}:
                text = text.replace(secret, "***")
    return text


def is_database_url(uri: str) -> bool:
    """A SQLAlchemy URL (`sqlite:///`, `postgresql://`, `mysql+pymysql://` ...)."""
    scheme = urlsplit(uri).scheme
    return bool(scheme) and scheme.split("+")[0] not in (*SERVER_SCHEMES, "file")


def check_driver(url: str, what: str) -> None:
    """Fail in one line naming the package to install when `url`'s database driver is missing."""
    try:
        dialect = sqlalchemy.engine.make_url(url).get_dialect()
    except Exception as err:  # a malformed URL or an unknown dialect: SQLAlchemy's message says
        raise StoreError(f"{what} {mask(url)!r} is not a usable database URL: {err}") from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        module = (err.name or "").split(".")[0] or "its driver"
        package = DRIVER_PACKAGES.get(module, module)
        raise StoreError(
            f"{what} {mask(url)!r} needs the database driver {module!r}: pip install {package}"
        ) from None


@contextlib.contextmanager
def exclusive(url: str, name: str):
    """Hold the lock `name` for the block: in the PostgreSQL server at `url` (against every
    machine), or in a file beside a SQLite database (a file on one machine)."""
    parsed = sqlalchemy.engine.make_url(url)
    backend = parsed.get_backend_name()
    database = Path(parsed.database or ".").resolve()
    on_disk = parsed.database not in (None, "", ":memory:") and database.parent.is_dir()
    if backend == "sqlite" and on_disk:  # (a missing folder: opening the database fails)
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        with filelock.FileLock(f"{database}.{digest}.lock"):
            yield
        return
    if backend != "postgresql":
        yield  # no lock for other databases: start one worker first, the others after it
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()


def resolve_tracking_uri(cli_value: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the project's SQLite store."""
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, None for any other kind of store."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def use_tracking(uri: str, experiment_name: str) -> str:
    """Point MLflow at `uri` and `experiment_name` (created if needed); returns its id.

    With a SQLite store, artifacts go next to the database (results/artifacts/...) instead of
    MLflow's default ./mlruns in whatever folder the command ran from.
    """
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    if is_database_url(uri):
        check_driver(uri, "MLflow tracking URI")
        with exclusive(uri, "harness:mlflow-schema"):  # the first client creates the schema
            found = client.get_experiment_by_name(experiment_name)
    else:
        found = client.get_experiment_by_name(experiment_name)
    if found is None:
        location = None
        if db is not None:
            location = (db.resolve().parent / "artifacts" / experiment_name).as_uri()
        experiment_id = client.create_experiment(experiment_name, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def mlflow_ui_hint(uri: str) -> str:
    """How to open the MLflow UI on `uri`: a server's own URL, or the command that serves a store."""
    scheme = urlsplit(uri).scheme
    if scheme in ("http", "https"):
        return f"open {mask(uri)} in a browser (the MLflow server's UI)"
    if not is_database_url(uri):
        return f"the MLflow UI of {mask(uri)}"
    beside = Path(sys.executable).parent / "mlflow"
    mlflow_bin = str(beside) if beside.exists() else "mlflow"
    if mlflow_bin.startswith(os.getcwd()):
        mlflow_bin = os.path.relpath(mlflow_bin)
    return f"{mlflow_bin} ui --backend-store-uri {mask(uri)}"


def param_value(value: Any) -> str:
    return "None" if value is None else str(value)


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def policy_artifact_path(run_id: str) -> Path:
    """Local path of a run's saved policy (downloaded if the store is remote)."""
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=POLICY_ARTIFACT))
