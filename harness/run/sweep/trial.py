"""One Optuna trial: every seed of the trial's experiment as a nested MLflow run."""

from __future__ import annotations

import contextlib
import json
import statistics
import warnings
from dataclasses import dataclass

import optuna
from mlflow.tracking import MlflowClient
from optuna.exceptions import StorageInternalError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from harness.config import tags as tag
from harness.config.metrics import SWEEP_OBJECTIVE, SWEEP_OBJECTIVE_STD
from harness.config.space import Sweep, SweepError, sample_params
from harness.infra import databases, stores
from harness.infra.signals import release_cut_statements

with warnings.catch_warnings():  # "experimental (supported from v2.8.0)": on every import
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    RETRY = RetryHeartbeatStaleTrialCallback(max_retry=1)  # a failed trial of a dead worker
# What a trial imports to train (torch, transformers, TRL: 6-7 s of CPU), deferred to the first
# trial: a sweep's parent process, which only coordinates its workers, never pays for it.
TRAINING_IMPORTS = ("harness.methods.checks", "harness.run.recipe")
# What Optuna's RDB storage raises when its database goes away (StorageInternalError wraps
# SQLAlchemy's error in a message about "invalid data ... exceeding max length").
STORAGE_ERRORS = (StorageInternalError, SQLAlchemyError)


@dataclass(frozen=True)
class Claim:
    trial: optuna.Trial
    trial_id: int  # the storage's id of the trial (its heartbeat is recorded under it)
    retry_of: int | None  # for a retry of a dead worker's trial, that trial's number


class StorageLost(SweepError):
    """The Optuna storage stopped answering mid-sweep: the message names it (masked), the
    trial and the runs it could not end."""


def lost_storage(settings, err: Exception, what: str) -> StorageLost:
    """The StorageLost for a storage error `err` met `what` (e.g. "during trial 3")."""
    cause = err.__cause__ or err
    reason = databases.redact(f"{type(cause).__name__}: {cause}", settings.storage)
    return StorageLost(
        f"Optuna storage {databases.mask(settings.storage)} stopped answering {what} "
        f"({reason.splitlines()[0][:300]}); rerun the command once it answers: a trial left "
        "RUNNING is then failed and retried"
    )


@contextlib.contextmanager
def storage_lost(settings, what: str):
    """StorageLost instead of a storage error inside the block."""
    try:
        yield
    except STORAGE_ERRORS as err:
        raise lost_storage(settings, err, what) from None


class PruningListener:
    """Reports the objective to Optuna at each harness evaluation; stops training when pruned.

    Seed i of a trial reports at step + i * (steps + 1), so the pruner compares each seed with
    the same seed of other trials.
    """

    def __init__(self, trial: optuna.Trial, objective: str, offset: int):
        self.trial, self.objective, self.offset = trial, objective, offset
        self.pruned_at: int | None = None
        self.lost: Exception | None = None  # the storage's error, if it went away

    def __call__(self, step: int, metrics: dict[str, float]) -> bool:
        if self.objective not in metrics or self.lost is not None:
            return False  # scoring objectives (winrate/, bench/) exist only at the end
        try:
            self.trial.report(metrics[self.objective], self.offset + step)
            prune = step > 0 and self.trial.should_prune()
        except STORAGE_ERRORS as err:  # the run trains on; the trial says why it cannot end
            self.lost = err
            return False
        if prune:
            self.pruned_at = step
        return prune


def run_trial(
    sweep: Sweep,
    study: optuna.Study,
    claim: Claim,
    settings,
    parent: str,
    log=print,
) -> TrialState:
    """Train every seed, tell Optuna the mean objective (or PRUNED / FAIL), tag the runs."""
    from harness.methods.checks import resolve  # TRAINING_IMPORTS
    from harness.run.recipe import run_experiment

    trial, retry_of = claim.trial, claim.retry_of
    params = sample_params(sweep, trial)
    tags = trial_tags(settings, trial, params, retry_of)
    retry = f" (retry of trial {retry_of})" if retry_of is not None else ""
    log(f"trial {trial.number}: {params}{retry}")
    client = MlflowClient(settings.tracking_uri)
    values, run_ids, state = [], [], TrialState.COMPLETE
    try:
        for index, seed in enumerate(sweep.seeds):
            name = f"{settings.study_name}-t{trial.number}-{{label}}-s{seed}"
            resolved = resolve(sweep.experiment_for(params, seed), name_format=name)
            steps = resolved.experiment.train.steps
            listener = PruningListener(trial, sweep.objective, offset=index * (steps + 1))
            # The run's id comes from the recipe as soon as the run exists: a seed that fails
            # before (a combination the recipe rejects) has no run, and tags none.
            result = run_experiment(
                resolved,
                listeners=[listener],
                tags={**tags, tag.SEED: str(seed)},
                parent_run_id=parent,
                on_run_created=run_ids.append,
                log=log,
            )
            if listener.lost is not None:
                what = f"during trial {trial.number}; its run {result.run_id} is kept FINISHED"
                raise lost_storage(settings, listener.lost, what)
            if listener.pruned_at is not None:
                client.set_tag(result.run_id, tag.PRUNED, f"true (step {listener.pruned_at})")
                state = TrialState.PRUNED
                break
            values.append(client.get_run(result.run_id).data.metrics[sweep.objective])
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the run is KILLED, the worker stops
        raise end_interrupted_trial(study, trial, run_ids, client, err) from None
    except (StorageLost, stores.StoreLost, *STORAGE_ERRORS):  # a store is gone: the worker stops
        raise
    except Exception as err:  # the trial fails, the sweep goes on
        state = fail_trial(trial, settings, err, log)
    for run_id in run_ids:
        client.set_tag(run_id, tag.TRIAL_STATE, state.name)
    if state == TrialState.COMPLETE:
        mean, spread = log_objective(trial, settings, parent, values, run_ids)
        study.tell(trial, mean)
        seeds = list(sweep.seeds)
        log(
            f"trial {trial.number}: {sweep.objective} = {mean:.4f} ± {spread:.4f} over seeds {seeds}"
        )
    else:
        study.tell(trial, state=state)
        log(f"trial {trial.number}: {state.name.lower()}")
    return state


def fail_trial(trial: optuna.Trial, settings, err: Exception, log) -> TrialState:
    """FAIL: the error (passwords redacted) on the trial and in the log; a tracking server that
    went away stops the worker instead (every next trial would fail the same way)."""
    if stores.unreachable(err):
        raise stores.StoreLost(stores.server_gone()) from None
    error = databases.redact(
        f"{type(err).__name__}: {err}", settings.storage, settings.tracking_uri
    )[:2000]
    trial.set_user_attr("error", error)
    log(f"trial {trial.number} failed: {error}")
    return TrialState.FAIL


def trial_tags(settings, trial: optuna.Trial, params: dict, retry_of: int | None) -> dict:
    """The tags of the trial's runs. trial_params: the sampled values with their types, from
    which `harness figures` rebuilds the study without opening the Optuna storage."""
    tags = {
        tag.SWEEP: settings.study_name,
        tag.TRIAL: str(trial.number),
        tag.ROLE: tag.ROLE_TRIAL,
        tag.TRIAL_PARAMS: json.dumps(params, sort_keys=True),
    }
    if retry_of is not None:
        tags[tag.RETRY_OF] = str(retry_of)
    return tags


def log_objective(trial, settings, parent: str, values: list[float], run_ids: list[str]):
    """The mean objective over seeds and its spread: on the trial, its runs and the parent."""
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    trial.set_user_attr("seed_values", values)
    trial.set_user_attr("objective_std", spread)
    client = MlflowClient(settings.tracking_uri)
    for run_id in run_ids:
        client.set_tag(run_id, tag.TRIAL_VALUE, repr(mean))
    with study_lock(settings):  # another worker may log to the parent run at this instant
        client.log_metric(parent, SWEEP_OBJECTIVE, mean, step=trial.number)
        client.log_metric(parent, SWEEP_OBJECTIVE_STD, spread, step=trial.number)
    return mean, spread


def end_interrupted_trial(study, trial, run_ids, client, err) -> KeyboardInterrupt:
    """Ctrl-C or SIGTERM in a trial (its run already KILLED by the recipe): FAIL with its one
    retry, the runs tagged FAIL; the interrupt to raise, saying so."""
    release_cut_statements(err)
    for run_id in run_ids:
        client.set_tag(run_id, tag.TRIAL_STATE, TrialState.FAIL.name)
    trial.set_user_attr("error", f"interrupted: {err}"[:2000])
    fail_for_retry(study, trial.number)
    ended = f"trial {trial.number} FAIL, retried when the sweep is rerun"
    return KeyboardInterrupt(f"{err}; {ended}" if str(err) else ended)


def fail_for_retry(study: optuna.Study, number: int) -> None:
    """FAIL trial `number` (RUNNING) and enqueue its one retry, as for a dead worker's trial:
    an interrupted sweep, run again, runs it again."""
    study.tell(number, state=TrialState.FAIL)
    RETRY(study, study.get_trials(deepcopy=False)[number])


def study_lock(settings):
    """The study's lock, held by the database: for the study's set-up and for every write to
    the parent run that all workers share. MLflow inserts a run's first tag or latest metric of
    a name after looking it up, so two workers writing the same one at once collide (measured
    on PostgreSQL: UniqueViolation)."""
    return databases.exclusive(settings.storage, f"harness:study:{settings.study_name}")
