"""Run a Sweep as an Optuna study: resumable, several workers, one MLflow parent run.

The budget is enqueued once, as `n_trials` WAITING trials, when the study is created. Workers
claim waiting trials with an atomic state change in the storage (the same compare-and-set
Optuna uses), so K workers on one storage, here or on other machines, run each trial exactly
once. A worker killed mid-trial stops sending heartbeats; after the grace period any worker
fails that trial, closes its MLflow run as KILLED, and Optuna's RetryFailedTrialCallback
enqueues it once more.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass

import optuna
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage, RetryFailedTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from harness import stores
from harness.metrics import SWEEP_BEST_VALUE
from harness.space import Sweep, SweepError
from harness.sweep.trial import run_trial

PARENT_ATTR = "mlflow_parent_run_id"


@dataclass(frozen=True)
class StudySettings:
    storage: str
    study_name: str
    n_trials: int
    tracking_uri: str
    mlflow_experiment: str
    heartbeat_interval: int = 10  # seconds between a running trial's heartbeats
    grace_period: int = 60  # a trial silent this long belongs to a dead worker


def open_storage(settings: StudySettings) -> RDBStorage:
    engine = {"connect_args": {"timeout": 60}} if settings.storage.startswith("sqlite") else {}
    try:
        return RDBStorage(
            settings.storage,
            engine_kwargs=engine,
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            failed_trial_callback=RetryFailedTrialCallback(max_retry=1),
        )
    except Exception as err:  # SQLAlchemy raises many types; all mean the same to the user
        raise SweepError(
            f"storage {settings.storage!r} is unreachable: {type(err).__name__}: {err}"
        ) from None


def make_sampler(sweep: Sweep):
    if sweep.sampler == "grid":
        return optuna.samplers.GridSampler(
            {k: list(d.options) for k, d in sweep.space.items()}, seed=sweep.sampler_seed
        )
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=sweep.sampler_seed)
    return optuna.samplers.TPESampler(seed=sweep.sampler_seed)


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
        sampler=make_sampler(sweep),
        pruner=make_pruner(sweep),
    )


def prepare_study(sweep: Sweep, settings: StudySettings) -> tuple[optuna.Study, str]:
    """Create the study and its budget, or load it and top the budget up; the parent run id."""
    storage = open_storage(settings)
    try:
        study = optuna.create_study(
            study_name=settings.study_name,
            storage=storage,
            direction=sweep.direction,
            sampler=make_sampler(sweep),
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
    # Resuming with the same budget enqueues nothing.
    for number in range(budget, settings.n_trials):
        study.enqueue_trial(budget_params(sweep, number), skip_if_exists=False)
    study.set_user_attr("budget", max(budget, settings.n_trials))
    parent = study.user_attrs.get(PARENT_ATTR) or create_parent_run(sweep, settings)
    study.set_user_attr(PARENT_ATTR, parent)
    MlflowClient(settings.tracking_uri).update_run(parent, status="RUNNING")
    return study, parent


def budget_params(sweep: Sweep, number: int) -> dict:
    """What the budget's trial `number` is enqueued with: {} (the sampler chooses), or for a grid
    sweep its grid point, since Optuna's GridSampler cannot fill in an enqueued trial itself."""
    if sweep.sampler != "grid":
        return {}
    points = itertools.product(*(d.options for d in sweep.space.values()))
    return dict(zip(sweep.space, next(itertools.islice(points, number, None)), strict=True))


def create_parent_run(sweep: Sweep, settings: StudySettings) -> str:
    experiment_id = stores.use_tracking(settings.tracking_uri, settings.mlflow_experiment)
    client = MlflowClient(settings.tracking_uri)
    run = client.create_run(
        experiment_id,
        run_name=settings.study_name,
        tags={
            "sweep": settings.study_name,
            "optuna_storage": settings.storage,
            "role": "sweep_parent",
            "git_sha": stores.git_sha(),
            "dataset": sweep.base.dataset,
        },
    )
    params = {
        **sweep.describe(),
        "sampler": sweep.sampler,
        "pruner": sweep.pruner,
        "objective": sweep.objective,
        "direction": sweep.direction,
        "seeds": str(sweep.seeds),
        "n_trials": str(settings.n_trials),
    }
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return run.info.run_id


def claim_trial(study: optuna.Study) -> tuple[optuna.Trial, int | None] | None:
    """Take one WAITING trial by an atomic WAITING -> RUNNING change; None if there is none.

    Returns the trial and, for a retry of a dead worker's trial, that trial's number.
    """
    storage = study._storage
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                retry_of = RetryFailedTrialCallback.retried_trial_number(frozen)
                return optuna.Trial(study, frozen._trial_id), retry_of
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


class Heartbeat:
    """Records a running trial's heartbeat from a thread while the trial trains."""

    def __init__(self, storage: RDBStorage, trial_id: int, interval: int):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def close_killed_runs(study: optuna.Study, settings: StudySettings, parent: str) -> None:
    """MLflow child runs still RUNNING for trials Optuna failed (their worker died): KILLED."""
    failed = {str(t.number) for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    if not failed:
        return
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.mlflow.parentRunId = '{parent}' and attributes.status = 'RUNNING'",
    )
    for run in runs:
        if run.data.tags.get("trial") in failed:
            client.set_tag(run.info.run_id, "trial_state", "FAIL")
            client.set_tag(run.info.run_id, "error", "worker died mid-trial (no heartbeat)")
            client.set_terminated(run.info.run_id, status="KILLED")


def work(sweep: Sweep, settings: StudySettings, worker: str = "", log=print) -> int:
    """Claim and run trials until none is waiting and none is running elsewhere; trials run."""
    storage = open_storage(settings)
    study = load_study(sweep, settings, storage)
    parent = study.user_attrs[PARENT_ATTR]
    stores.use_tracking(settings.tracking_uri, settings.mlflow_experiment)
    done = 0
    while True:
        fail_stale_trials(study)  # a dead worker's trial -> FAIL, retried once (WAITING copy)
        close_killed_runs(study, settings, parent)
        claimed = claim_trial(study)
        if claimed is None:
            if not study.get_trials(
                deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
            ):
                return done
            time.sleep(min(settings.heartbeat_interval, 5))  # others still running: they may die
            continue
        trial, retry_of = claimed
        with Heartbeat(storage, trial._trial_id, settings.heartbeat_interval):
            run_trial(
                sweep,
                study,
                trial,
                settings,
                parent,
                retry_of,
                log=lambda line: log(f"{worker}{line}"),
            )
        done += 1


def finish(study: optuna.Study, settings: StudySettings, parent: str) -> dict:
    """Tag the best trial on the parent run, end it, and return a summary of the study."""
    client = MlflowClient(settings.tracking_uri)
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    summary = {"counts": counts, "best": None}
    if counts["COMPLETE"]:
        best = study.best_trial
        summary["best"] = best
        client.set_tag(parent, "best_trial", str(best.number))
        client.set_tag(parent, "best_value", repr(best.value))
        client.set_tag(parent, "best_params", json.dumps(best.params, sort_keys=True))
        client.log_metric(parent, SWEEP_BEST_VALUE, best.value, step=best.number)
    else:
        client.set_tag(parent, "best_trial", "none")
    client.set_terminated(parent, status="FINISHED")
    return summary
