"""Run a Sweep as an Optuna study: resumable, several workers, one MLflow parent run.

The budget is enqueued once, as `n_trials` WAITING trials, when the study is created. Workers
claim waiting trials with Optuna's `study.ask()` (an atomic WAITING -> RUNNING change in the
storage) under a claim lock, so K workers on one storage, here or on other machines, run each
trial exactly once. A worker killed mid-trial stops sending heartbeats; after the grace period any worker
fails that trial, closes its MLflow run as KILLED, and Optuna's RetryHeartbeatStaleTrialCallback
enqueues it once more.

Workers may start at the same instant on a fresh database: schema creation and the study's
set-up (budget, parent run) run under a lock held by the database (`databases.exclusive`), so
each happens once; each trial's parameters are chosen distinct from the others'
(`harness.run.sweep.params`). The storage URL's password is shown masked wherever it is printed
or logged.
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from dataclasses import dataclass

import optuna
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from harness.config import tags as tag
from harness.config.metrics import SWEEP_BEST_VALUE
from harness.config.space import Grid, Sweep, SweepError
from harness.infra import databases, stores
from harness.run.sweep.journal import JournalHeartbeatStorage
from harness.run.sweep.params import FIXED_PARAMS, choose_params, grid_points, make_sampler
from harness.run.sweep.trial import (
    RETRY,
    Claim,
    StorageLost,
    fail_for_retry,
    run_trial,
    storage_lost,
    study_lock,
)

PARENT_ATTR = "mlflow_parent_run_id"
WORKER_ATTR = "harness_worker"  # a trial's system attribute: host:pid of the worker running it


@dataclass(frozen=True)
class StudySettings:
    storage: str
    study_name: str
    n_trials: int
    tracking_uri: str
    mlflow_experiment: str
    heartbeat_interval: int = 10  # seconds between a running trial's heartbeats
    grace_period: int = 60  # a trial silent this long belongs to a dead worker


def open_storage(settings: StudySettings) -> RDBStorage | JournalHeartbeatStorage:
    """The study's storage, its schema created once however many workers start together."""
    url = settings.storage
    if databases.journal_path(url) is not None:
        return open_journal(settings)
    databases.check_driver(url, "storage")
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        with databases.exclusive(url, "harness:optuna-schema"):
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=settings.heartbeat_interval,
                grace_period=settings.grace_period,
                heartbeat_stale_trial_callback=RETRY,
            )
    except Exception as err:  # SQLAlchemy raises many types; all mean the same to the user
        reason = databases.redact(f"{type(err).__name__}: {err}".splitlines()[0], url)
        raise SweepError(f"storage {databases.mask(url)!r} is unreachable: {reason}") from None


def open_journal(settings: StudySettings) -> JournalHeartbeatStorage:
    """`journal:PATH`: Optuna's journal file, created with its folder if missing."""
    path = databases.journal_path(settings.storage)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalHeartbeatStorage(
            str(path),
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            stale_trial_callback=RETRY,
        )
    except OSError as err:
        raise SweepError(f"storage {settings.storage!r} cannot be opened: {err}") from None


def make_pruner(sweep: Sweep):
    return {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=sweep.base.train.steps
        ),
        "none": optuna.pruners.NopPruner,
    }[sweep.pruner]()


def load_study(sweep: Sweep, settings: StudySettings, storage: RDBStorage) -> optuna.Study:
    return optuna.load_study(
        study_name=settings.study_name,
        storage=storage,
        sampler=make_sampler(sweep, sweep.sampler_seed),
        pruner=make_pruner(sweep),
    )


def prepare_study(sweep: Sweep, settings: StudySettings) -> tuple[optuna.Study, str]:
    """Create the study and its budget, or load it and top the budget up; the parent run id.

    Under the study's lock: workers starting together enqueue the budget and create the
    parent run once."""
    storage = open_storage(settings)
    with study_lock(settings):
        try:
            study = optuna.create_study(
                study_name=settings.study_name,
                storage=storage,
                direction=sweep.direction,
                sampler=make_sampler(sweep, sweep.sampler_seed),
                pruner=make_pruner(sweep),
            )
            budget = 0
        except optuna.exceptions.DuplicatedStudyError:
            study = load_study(sweep, settings, storage)
            if study.direction.name.lower() != sweep.direction:
                raise SweepError(
                    f"study {settings.study_name!r} exists with direction {study.direction.name.lower()}"
                ) from None
            budget = study.user_attrs.get("budget", 0)
        enqueue_budget(sweep, study, budget, settings.n_trials)
        study.set_user_attr("budget", max(budget, settings.n_trials))
        parent = study.user_attrs.get(PARENT_ATTR) or create_parent_run(sweep, settings)
        study.set_user_attr(PARENT_ATTR, parent)
    MlflowClient(settings.tracking_uri).update_run(parent, status="RUNNING")
    return study, parent


def enqueue_budget(sweep: Sweep, study: optuna.Study, budget: int, n_trials: int) -> None:
    """WAITING trials from `budget` up to `n_trials` (none when resuming with the same budget);
    a grid sweep's carry their grid point, each point once."""
    is_grid = all(isinstance(d, Grid) for d in sweep.space.values())
    points = grid_points(sweep) if is_grid else None
    for index in range(budget, n_trials):
        study.enqueue_trial(points[index] if points else {}, skip_if_exists=False)


def create_parent_run(sweep: Sweep, settings: StudySettings) -> str:
    experiment_id = stores.use_tracking(settings.tracking_uri, settings.mlflow_experiment)
    client = MlflowClient(settings.tracking_uri)
    run = client.create_run(
        experiment_id,
        run_name=settings.study_name,
        tags={
            tag.SWEEP: settings.study_name,
            tag.OPTUNA_STORAGE: databases.mask(settings.storage),
            tag.ROLE: tag.ROLE_SWEEP_PARENT,
            tag.GIT_SHA: stores.git_sha(),
            tag.DATASET: sweep.base.dataset,
        },
    )
    params = {
        **sweep.describe(),
        "sampler": sweep.sampler,
        "pruner": sweep.pruner,
        "objective": sweep.objective,
        "direction": sweep.direction,
        "seeds": sweep.seeds,
        "n_trials": settings.n_trials,
    }
    for key, value in params.items():
        client.log_param(run.info.run_id, key, stores.param_value(value))
    return run.info.run_id


def claim_trial(
    study: optuna.Study, storage: RDBStorage, sweep: Sweep, settings: StudySettings
) -> Claim | None:
    """Take one WAITING trial with `study.ask()`, which pops it by an atomic WAITING -> RUNNING
    change; None if none is waiting.

    Under the study's claim lock (held by the database, so across machines): ask() creates a
    new trial when none is waiting, so seeing one wait and popping it must not interleave with
    another worker's claim. The trial's parameters are fixed on the spot, distinct from every
    other trial's (the lock lets workers choosing at once see each other's choice)."""
    with databases.exclusive(settings.storage, f"harness:claim:{settings.study_name}"):
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return None
        with warnings.catch_warnings():  # work() records the heartbeat that optimize() would
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            trial = study.ask()
        study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_system_attr(trial_id, WORKER_ATTR, stores.this_process())
        frozen = study.get_trials(deepcopy=False)[trial.number]
        retry_of = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
        if FIXED_PARAMS not in frozen.system_attrs and retry_of is None:
            # ask() made a trial of its own: another worker popped the last waiting one
            # without the lock (a database `databases.exclusive` cannot lock); not in the budget.
            study.tell(trial, state=TrialState.FAIL)
            return None
        if not (frozen.params or frozen.system_attrs.get(FIXED_PARAMS)):  # not a retry, not grid
            trial = with_fixed_params(study, storage, trial_id, choose_params(sweep, study, frozen))
    return Claim(trial, trial_id, retry_of)


def with_fixed_params(study: optuna.Study, storage, trial_id: int, params: dict) -> optuna.Trial:
    """The claimed trial `trial_id`, made to suggest `params`: stored where enqueue_trial keeps
    fixed values, then a new Trial, since a Trial reads its fixed values once when made. Public
    storage methods and the public Trial constructor; tests/test_optuna_pins.py holds the
    pinned Optuna to this behaviour, and to RetryHeartbeatStaleTrialCallback's (experimental)
    retried_trial_number."""
    storage.set_trial_system_attr(trial_id, FIXED_PARAMS, params)
    return optuna.Trial(study, trial_id)


def close_killed_runs(study: optuna.Study, settings: StudySettings, parent: str) -> None:
    """MLflow child runs of trials Optuna failed (their worker died): KILLED, tagged FAIL.

    The run may already be KILLED: any harness command on the store marks a run whose process
    died (harness.infra.stores.reap_dead_runs); it still lacks its trial's state."""
    failed = {str(t.number) for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    if not failed:
        return
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    runs = stores.all_runs(
        client,
        [experiment.experiment_id],
        f"tags.{tag.PARENT_RUN} = '{parent}' and attributes.status != 'FINISHED'",
    )
    now = time.time()
    for run in runs:
        tags = run.data.tags
        if tags.get(tag.TRIAL) not in failed or tag.TRIAL_STATE in tags:
            continue
        client.set_tag(run.info.run_id, tag.TRIAL_STATE, TrialState.FAIL.name)
        if run.info.status == "RUNNING":
            stores.kill_if_dead(client, run, now, verdict="its worker died (no trial heartbeat)")


def work(sweep: Sweep, settings: StudySettings, worker: str = "", log=print) -> int:
    """Claim and run trials until none is waiting and none is running elsewhere; trials run.

    Every trial loads its reference afresh: keeping it in memory across trials (a "warm"
    worker) gained 1.10x trials per hour at GPT-2-small size and was removed
    (results/benchmarks/warm.md)."""
    storage = open_storage(settings)
    study = load_study(sweep, settings, storage)
    parent = study.user_attrs[PARENT_ATTR]
    stores.use_tracking(settings.tracking_uri, settings.mlflow_experiment)
    done = 0
    with storage_lost(settings, "between trials"):
        while True:
            fail_stale_trials(study)  # a dead worker's trial -> FAIL, retried once (WAITING copy)
            close_killed_runs(study, settings, parent)
            claimed = claim_trial(study, storage, sweep, settings)
            if claimed is None:
                if not study.get_trials(
                    deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
                ):
                    return done
                time.sleep(min(settings.heartbeat_interval, 5))  # others may still die
                continue
            beat = functools.partial(storage.record_heartbeat, claimed.trial_id)
            with (
                storage_lost(settings, f"during trial {claimed.trial.number}"),
                stores.Heartbeat(beat, settings.heartbeat_interval),
            ):
                run_trial(
                    sweep, study, claimed, settings, parent, log=lambda line: log(f"{worker}{line}")
                )
            done += 1


def end_interrupted(
    study: optuna.Study, settings: StudySettings, parent: str, workers: set[str]
) -> str:
    """After Ctrl-C or SIGTERM, once this machine's `workers` (host:pid) have stopped: FAIL, for
    one retry, the trials they left RUNNING (a worker killed before it could), close their
    runs KILLED, and mark the parent run KILLED unless a worker elsewhere still runs a trial.
    Returns what was ended, for the one line the command prints."""
    left = [
        t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.system_attrs.get(WORKER_ATTR) in workers
    ]
    for number in left:
        fail_for_retry(study, number)
    close_killed_runs(study, settings, parent)
    ended = f"trial(s) {left} of stopped workers FAIL, retried when rerun; " if left else ""
    client = MlflowClient(settings.tracking_uri)
    if study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # The parent run stays RUNNING for them: without this process's heartbeat, which
        # would soon say its process is gone; theirs beat it again.
        client.delete_tag(parent, stores.HEARTBEAT_TAG)
        return f"sweep {settings.study_name!r} stopped here; {ended}other workers go on"
    client.set_tag(parent, tag.ERROR, "interrupted")
    client.set_terminated(parent, status="KILLED")
    return f"sweep {settings.study_name!r} stopped; {ended}parent run {parent} marked KILLED"


def end_storage_lost(settings: StudySettings, parent: str, err: StorageLost) -> StorageLost:
    """The Optuna storage went away: the parent run KILLED with the reason (where the MLflow
    store still answers); the error to report, saying so."""
    client = MlflowClient(settings.tracking_uri)
    try:
        client.set_tag(parent, tag.ERROR, f"killed: {err}"[:5000])
        client.set_terminated(parent, status="KILLED")
    except Exception:  # the tracking store is gone too: the next command reaps the parent
        return StorageLost(f"{err}; parent run {parent} left RUNNING (its store is unreachable)")
    return StorageLost(f"{err}; parent run {parent} marked KILLED")


def finish(study: optuna.Study, settings: StudySettings, parent: str) -> dict:
    """Tag the best trial on the parent run, end it, and return a summary of the study.

    Under the study's lock: workers that finish together would both insert the parent's tags
    (measured on PostgreSQL: a UniqueViolation on the tags' key for the second one)."""
    client = MlflowClient(settings.tracking_uri)
    with study_lock(settings):
        trials = study.get_trials(deepcopy=False)
        counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
        summary = {"counts": counts, "best": None}
        if counts["COMPLETE"]:
            best = study.best_trial
            summary["best"] = best
            client.set_tag(parent, tag.BEST_TRIAL, str(best.number))
            client.set_tag(parent, tag.BEST_VALUE, repr(best.value))
            client.set_tag(parent, tag.BEST_PARAMS, json.dumps(best.params, sort_keys=True))
            client.log_metric(parent, SWEEP_BEST_VALUE, best.value, step=best.number)
        else:
            client.set_tag(parent, tag.BEST_TRIAL, "none")
        client.set_terminated(parent, status="FINISHED")
    return summary
