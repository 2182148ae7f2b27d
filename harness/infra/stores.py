"""Where runs go and how they end: opening a store safely, experiment set-up, run provenance,
the heartbeat that lets a dead run be marked KILLED, and how the MLflow UI opens an experiment
(the tracking-URI resolver itself is `harness.infra.locations`).

No training code here: `analysis` opens its store with the same functions.

A run's process can die without ending its run (SIGKILL, a power cut): MLflow would show it
RUNNING forever. Every run the harness starts records its process (`harness.process`,
host:pid) and a heartbeat tag (`harness.heartbeat`, Unix seconds) refreshed by a thread; every
harness command that opens a store marks KILLED the RUNNING runs whose process is gone (same
host, pid not alive) or whose heartbeat is older than the grace period (another host). It is
the sweep's Optuna heartbeat idea, applied to every run.

MLflow 3.17's UI picks an experiment's page from a browser-wide "GenAI | Model training" switch
(`?workflowType=` in the URL, else the browser's localStorage, default GenAI), not from the
`mlflow.experimentKind` tag; the runs table's columns come from a saved view, an experiment tag
`mlflow.sharedViewState.{id}` opened with `?viewStateShareKey={id}`. Both were read from the UI
bundled with mlflow (mlflow/server/js) and checked in headless Chromium (`make screenshots`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import pandas as pd
import requests
from filelock import FileLock
from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
from mlflow.entities import DatasetInput, InputTag, LoggedModelStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from harness.config import tags
from harness.config.metrics import EVAL_GOLD_REWARD, EVAL_KL, EVAL_PAIR_ACCURACY
from harness.infra.databases import (
    StoreError,
    check_driver,
    check_reachable,
    exclusive,
    is_database_url,
    mask,
    sqlite_tables,
    without_credentials,
)
from harness.infra.locations import DEFAULT_TRACKING_URI, UI_VIEW_ID, sqlite_path
from harness.infra.store_template import seed_new_store

POLICY_ARTIFACT = "policy"  # the trained policy's folder among a run's artifacts
HEARTBEAT_TAG = tags.HEARTBEAT
PROCESS_TAG = tags.PROCESS
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120  # four missed heartbeats: the process is gone or hung
_opened: set[str] = set()  # stores checked and initialised by this process
# What a database says when an insert meets a row another process inserted since it looked.
COLLISION_MARKS = (
    "UNIQUE constraint failed",
    "UniqueViolation",
    "duplicate key",
    "Duplicate entry",
)
COLLISION_ATTEMPTS = 6
# What MLflow's client says when its server is gone (requests' ConnectionError, as text).
NO_ANSWER_MARKS = ("Max retries exceeded", "Connection refused", "Failed to establish")
PROBE_SECONDS = 10  # a tracking server that does not answer its health check in this long
MLFLOW_TABLES = {"experiments", "runs"}  # what tells an MLflow store from another database


POLICY_MODEL_TAG = tags.POLICY_MODEL
# The runs table's columns in the harness's saved view: what tells methods apart, side by side.
UI_COLUMNS = (
    "params.`method`",
    "params.`beta`",
    "attributes.`Dataset`",
    f"metrics.`{EVAL_GOLD_REWARD}`",
    f"metrics.`{EVAL_KL}`",
    f"metrics.`{EVAL_PAIR_ACCURACY}`",
    "attributes.`Models`",
)


def open_store(uri: str, *, writable: bool = True, log=print) -> MlflowClient:
    """A client on `uri` after checking that it can be written (and its driver installed),
    creating its tables once (a new SQLite store starts as a copy of a verified empty one:
    `harness.infra.store_template`), and marking KILLED the runs whose process died.

    Two processes creating a new store at once race in MLflow's migrations: the first connect
    holds a lock (a file lock beside a SQLite file; the database's own lock for a server)."""
    if uri not in _opened:
        check_store_kind(uri)
        db = sqlite_path(uri)
        if db is not None:
            if writable:
                check_writable(uri, db)
            check_mlflow_tables(uri, sqlite_tables(uri, db, "tracking URI", writable=writable))
            lock = hashlib.sha256(str(db.resolve()).encode()).hexdigest()[:16]
            with FileLock(Path(tempfile.gettempdir()) / f"harness-store-{lock}.lock"):
                if writable:
                    seed_new_store(db, log)
                MlflowClient(uri).search_experiments(max_results=1)
        elif is_database_url(uri):
            check_driver(uri, "MLflow tracking URI")
            check_reachable(uri, "MLflow tracking URI")
            with exclusive(uri, "harness:mlflow-schema"):
                MlflowClient(uri).search_experiments(max_results=1)
        elif urlparse(uri).scheme in ("http", "https"):
            check_listening(uri)
        _opened.add(uri)
    client = MlflowClient(uri)
    try:
        reap_dead_runs(client, log)
    except Exception as err:  # a read-only store can still be read (figures); say why not reaped
        if writable:
            raise
        log(f"harness: could not check the store for dead runs ({type(err).__name__})")
    return client


def check_store_kind(uri: str) -> None:
    """Refuse a plain path (MLflow's file store, which MLflow 3 refuses with a long traceback)
    in one line that says what to pass instead and how to migrate an existing one."""
    scheme = urlparse(uri).scheme
    if scheme not in ("", "file") or os.environ.get("MLFLOW_ALLOW_FILE_STORE", "") == "true":
        return
    folder = Path(local_file_uri_to_path(uri) if scheme else uri)
    migrate = (
        f"; to keep its runs: mlflow migrate-filestore --source {folder} --target {DEFAULT_TRACKING_URI}"
        if folder.is_dir()
        else ""
    )
    raise StoreError(
        f"tracking URI {mask(uri)} is a path, not a database URL (MLflow's file store, which "
        f"MLflow 3 refuses): pass e.g. --tracking-uri {DEFAULT_TRACKING_URI}{migrate}"
    )


def check_mlflow_tables(uri: str, tables: set[str]) -> None:
    """An existing SQLite database must be an MLflow store (or empty): MLflow would add its
    tables to another application's database."""
    if tables and not tables >= MLFLOW_TABLES:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(
            f"tracking URI {mask(uri)}: {sqlite_path(uri)} is another application's database "
            f"(tables {shown}), not an MLflow store: pass another --tracking-uri"
        )


def check_writable(uri: str, db: Path) -> None:
    """Raise StoreError, naming the path, unless the database and its folder can be written."""
    folder = db.parent
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise StoreError(f"tracking URI {mask(uri)}: {parent} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # SQLite writes its journal beside the database
            pass
        if db.exists():
            with open(db, "r+b"):
                pass
    except OSError as err:
        where = err.filename or folder
        raise StoreError(
            f"tracking URI {mask(uri)}: cannot write {where} ({os.strerror(err.errno)}); "
            "pass a writable --tracking-uri"
        ) from None


def check_listening(uri: str, timeout: float = PROBE_SECONDS) -> None:
    """Raise StoreError, naming the URI, unless a server answers at `uri` within `timeout`.

    MLflow's client retries a refused connection 7 times with backoff (measured: 258 s of
    silence, then a traceback); one short request up front says it in seconds. Any HTTP answer
    counts (the server is there; MLflow reports what it says), only no answer does not."""
    try:
        requests.get(without_credentials(uri).rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as err:
        errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(err))  # requests nests it deep
        reason = errno[1] if errno else type(err).__name__
        raise StoreError(
            f"tracking URI {mask(uri)}: no server answers within {timeout:g} s ({reason}); "
            "start it or pass another --tracking-uri"
        ) from None


class StoreLost(StoreError):
    """The tracking server stopped answering while a run was open: the message names the run,
    which could not be ended (the next command that reaches the store marks it KILLED)."""


def unreachable(err: BaseException) -> bool:
    """Whether `err`, or an error that led to it, says that the tracking server did not answer
    (MLflow wraps requests' ConnectionError in an MlflowException's message)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, requests.ConnectionError | requests.Timeout):
            return True
        if isinstance(seen, MlflowException) and any(m in str(seen) for m in NO_ANSWER_MARKS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def server_gone() -> str:
    return (
        f"the tracking server {mask(mlflow.get_tracking_uri())} stopped answering; "
        "the next harness command that reaches it marks KILLED what was left RUNNING"
    )


def store_lost(run_id: str, name: str) -> StoreLost:
    return StoreLost(f"run {run_id} ({name}) could not be ended: {server_gone()}")


def use_tracking(uri: str, experiment_name: str) -> str:
    """Point MLflow at `uri` and `experiment_name` (created if needed); returns its id.

    With a SQLite store, artifacts go next to the database (results/artifacts/...) instead of
    MLflow's default ./mlruns in whatever folder the command ran from.
    """
    db = sqlite_path(uri)
    client = open_store(uri)
    mlflow.set_tracking_uri(uri)
    found = client.get_experiment_by_name(experiment_name)
    if found is None:
        location = None
        if db is not None:
            location = (db.resolve().parent / "artifacts" / experiment_name).as_uri()
        try:
            experiment_id = client.create_experiment(experiment_name, artifact_location=location)
        except MlflowException:  # another process created it since we looked
            found = client.get_experiment_by_name(experiment_name)
            if found is None:
                raise
            experiment_id = found.experiment_id
    else:
        experiment_id = found.experiment_id
    for key, value in ui_tags().items():
        if found is None or found.tags.get(key) != value:
            retry_collisions(lambda k=key, v=value: client.set_experiment_tag(experiment_id, k, v))
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def ui_tags() -> dict[str, str]:
    """Experiment tags: a model-training experiment with the harness's saved runs view."""
    state = {
        "selectedColumns": list(UI_COLUMNS),
        "columnOrder": list(UI_COLUMNS),
        "chartsSearchFilter": "eval/",  # the charts view: the yardstick, every method alike
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    }
    view = {"name": "harness: compare runs", "createdAt": 0, "updatedAt": 0}
    return {
        "mlflow.experimentKind": "custom_model_development",
        f"mlflow.sharedViewState.{UI_VIEW_ID}": json.dumps(view | {"state": json.dumps(state)}),
    }


def param_value(value: Any) -> str:
    """MLflow params are strings: strings stay as they are, anything else is JSON
    (`null`, `true`, `0.1`, `["rm", "gold"]`), so tools can parse them back."""
    return value if isinstance(value, str) else json.dumps(value)


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or "not a checkout"
    except (OSError, subprocess.SubprocessError):
        return "not a checkout"


def local_artifact_dir(client: MlflowClient, run_id: str) -> Path | None:
    """The folder of a run's artifacts when the artifact store is local, else None."""
    uri = client.get_run(run_id).info.artifact_uri
    if urlparse(uri).scheme not in ("", "file"):
        return None
    return Path(local_file_uri_to_path(uri))


def discard_unsaved_policy(client: MlflowClient, run_id: str) -> None:
    """Remove what a failed or interrupted save of a run's policy left: its `policy/` artifact
    folder (a LoRA adapter) and every logged model of the run that is not READY.

    MLflow 3 writes a logged model's files under `<experiment>/models/m-*/`, not under the
    run's artifacts, marks the model FAILED on an error and leaves it PENDING when interrupted
    (KeyboardInterrupt is not an Exception to it): the files go, and the model is deleted so
    that the experiment's Models list shows no broken policy."""
    folder = local_artifact_dir(client, run_id)
    if folder is not None:
        shutil.rmtree(folder / POLICY_ARTIFACT, ignore_errors=True)
    experiment = client.get_run(run_id).info.experiment_id
    for model in client.search_logged_models([experiment]):
        if model.source_run_id != run_id or model.status == LoggedModelStatus.READY:
            continue
        with contextlib.suppress(Exception):  # a remote store may refuse deletes: still delete it
            get_artifact_repository(model.artifact_location).delete_artifacts()
        client.delete_logged_model(model.model_id)


def policy_artifact_path(client: MlflowClient, run_id: str) -> Path:
    """Local path of a run's policy saved as plain files (runs logged before the policy became
    an MLflow model; downloaded if the store is remote)."""
    return Path(client.download_artifacts(run_id, POLICY_ARTIFACT))


# ---- run lifecycle: heartbeat and reaping ---------------------------------------------------


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Beats on entering the block, then every `interval` seconds from a thread until it ends.

    `beat` is an MLflow run's id (the run's owning process and the time of its last beat, as
    tags that why_dead reads) or a function to call (a sweep's Optuna trial heartbeat). A beat
    that fails in the thread (a busy or full store) is retried at the next one."""

    def __init__(
        self,
        beat: str | Callable[[], object],
        interval: float = HEARTBEAT_SECONDS,
        tracking_uri: str | None = None,  # a run's store (default: MLflow's current one)
    ):
        self.beat = beat if callable(beat) else _run_beat(MlflowClient(tracking_uri), beat)
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="harness-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self.stopped.wait(self.interval):
            with contextlib.suppress(Exception):
                self.beat()

    def __enter__(self):
        self.beat()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join()


def _run_beat(client: MlflowClient, run_id: str) -> Callable[[], None]:
    def beat() -> None:
        now = RunTag(HEARTBEAT_TAG, f"{time.time():.0f}")
        client.log_batch(run_id, tags=[RunTag(PROCESS_TAG, this_process()), now])

    return beat


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def why_dead(tags: dict[str, str], now: float) -> str | None:
    """Why a RUNNING run's process is known to be gone, or None while it may be alive."""
    if HEARTBEAT_TAG not in tags:
        return None  # not started by a harness that keeps heartbeats: nothing to go by
    beat = float(tags[HEARTBEAT_TAG])
    host, _, pid = tags.get(PROCESS_TAG, "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return f"its process (pid {pid}) is gone"
    if now - beat > GRACE_SECONDS:
        return f"no heartbeat for {now - beat:.0f}s"
    return None


def kill_if_dead(client: MlflowClient, run, now: float, verdict: str | None = None) -> str | None:
    """The one place a run left RUNNING is ended: KILLED, with an `error` tag saying why, if
    its process is gone; returns why, or None for a run that may be alive (left RUNNING).

    `verdict` is the caller's own evidence (Optuna failed the trial for a stale heartbeat);
    without it the run's own heartbeat and process tags decide (why_dead)."""
    reason = verdict or why_dead(run.data.tags, now)
    if reason is None:
        return None
    beat = run.data.tags.get(HEARTBEAT_TAG)
    end = float(beat) if beat else now
    stamp = datetime.fromtimestamp(end, UTC).isoformat(timespec="seconds")
    client.set_tag(run.info.run_id, tags.ERROR, f"killed: {reason}; last heartbeat {stamp}")
    client.set_terminated(run.info.run_id, status="KILLED", end_time=int(end * 1000))
    return reason


def reap_dead_runs(client: MlflowClient, log=print) -> list[str]:
    """Mark KILLED every RUNNING run whose process died, one line each; returns their ids."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    now, reaped = time.time(), []
    for run in all_runs(client, experiments, "attributes.status = 'RUNNING'"):
        reason = kill_if_dead(client, run, now)
        if reason is None:
            continue
        log(
            f"harness: run {run.info.run_id} ({run.info.run_name}) was left RUNNING and "
            f"{reason}: marked KILLED"
        )
        reaped.append(run.info.run_id)
    return reaped


def all_runs(
    client: MlflowClient,
    experiment_ids: list[str],
    filter_string: str = "",
    order_by: list[str] | None = None,
):
    """Every run of `experiment_ids` matching `filter_string` (in `order_by`'s order), page by
    page (MLflow returns at most 1000 runs per request)."""
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string, max_results=1000, order_by=order_by, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def log_dataset_inputs(
    client: MlflowClient, run_id: str, name: str, source: str, splits: dict[str, list[dict]], *, hub
) -> None:
    """Each split as a dataset input of run `run_id` (the runs table's Dataset column and its
    filters): `name`, a digest of the rows, where they came from, and the row count."""
    inputs = []
    for split, rows in splits.items():
        if not rows:
            continue
        origin = HuggingFaceDatasetSource(source, split=split) if hub else Path(source).as_uri()
        with warnings.catch_warnings():  # MLflow has two equal resolvers for local paths
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways.*")
            dataset = mlflow.data.from_pandas(pd.DataFrame(rows), source=origin, name=name)
        # The tags as mlflow.log_inputs writes them: ours, then the split as MLflow's context.
        labels = [InputTag("rows", str(len(rows))), InputTag(MLFLOW_DATASET_CONTEXT, split)]
        # Dataset._to_mlflow_entity is how mlflow.log_inputs itself turns a dataset into the
        # entity the client logs; MLflow has no public conversion (pinned: tests/test_pinned_internals.py).
        inputs.append(DatasetInput(dataset=dataset._to_mlflow_entity(), tags=labels))
    retry_collisions(lambda: client.log_inputs(run_id, datasets=inputs))


def retry_collisions(write: Callable[[], Any]) -> Any:
    """`write()`, again after a short random pause while it collides with another process's insert.

    MLflow looks some rows up, then inserts them (a dataset input's dataset, an experiment tag),
    in one transaction: two runs writing the same one at the same instant both insert and one
    breaks the primary key (SQLite: UNIQUE constraint failed; PostgreSQL: UniqueViolation,
    answered 400 by `mlflow server` and not retried by its client). The transaction was rolled
    back, so writing again finds the other process's row and uses it."""
    for attempt in range(1, COLLISION_ATTEMPTS):
        try:
            return write()
        except MlflowException as err:
            if not any(mark in str(err) for mark in COLLISION_MARKS):
                raise
            time.sleep(random.uniform(0.05, 0.25) * attempt)
    return write()


def model_requirements() -> list[str]:
    """pip requirements of a logged policy: the installed transformers and torch (MLflow's own
    inference would import torchvision, which the harness does not need)."""
    return [f"{p}=={version(p).split('+')[0]}" for p in ("transformers", "torch")]
