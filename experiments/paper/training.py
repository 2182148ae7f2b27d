"""Train the studies' missing runs and the sweep's missing trials (see runner.py on resuming)."""

from __future__ import annotations

import hashlib

from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from analysis.paper import SWEEP
from harness.commands.common import quiet_libraries
from harness.config.spec import Experiment
from harness.data.worlds import world_version
from harness.infra.stores import all_runs, use_tracking
from harness.run.recipe import run_experiment
from harness.run.sweep.study import StudySettings, finish, prepare_study, work

KEY_TAG = "paper_key"


def run_key(exp: Experiment) -> str:
    """The resume key: a hash of every field of the experiment as written (seed and overrides
    included), before it was resolved, and of its built-in world's version (a run on an older
    world is not resumed: it is trained again)."""
    written = exp.to_json() + "\nworld version " + world_version(exp.dataset)
    return hashlib.sha256(written.encode()).hexdigest()[:16]


def run_studies(runs, sweep, sweep_name, uri: str, storage: str, log=print) -> tuple[int, int]:
    """(runs trained, runs skipped because a finished run with their key exists)."""
    quiet_libraries()
    trained = skipped = 0
    for study, experiments in runs.items():
        done = train_missing(study, experiments, uri, log)
        trained, skipped = trained + done, skipped + len(experiments) - done
    if sweep is not None:
        done, before = run_sweep(sweep, sweep_name, uri, storage, log)
        trained, skipped = trained + done, skipped + before
    return trained, skipped


def runs_by_key(client: MlflowClient, experiment_id: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for run in all_runs(client, [experiment_id], f"tags.{KEY_TAG} != ''"):
        found.setdefault(run.data.tags[KEY_TAG], []).append(run.info)
    return found


def train_missing(study: str, experiments, uri: str, log) -> int:
    """Train every (resolved) experiment without a FINISHED or RUNNING run of its key; returns how many it
    trained. Opening the store marked KILLED the runs whose process died (a killed `make paper`),
    so a run still RUNNING is alive: another `make paper` is training it."""
    experiment_id = use_tracking(uri, study)
    client = MlflowClient(uri)
    existing = runs_by_key(client, experiment_id)
    missing = [
        e
        for e in experiments
        if not any(i.status in ("FINISHED", "RUNNING") for i in existing.get(run_key(e.source), []))
    ]
    log(
        f"{study}: {len(experiments) - len(missing)} of {len(experiments)} run(s) already finished or running, training {len(missing)}"
    )
    for i, resolved in enumerate(missing, 1):
        log(f"{study}: run {i}/{len(missing)}: {resolved.source.name}")
        key = run_key(resolved.source)
        run_experiment(resolved, tags={KEY_TAG: key, "study": study}, log=log)
    return len(missing)


def run_sweep(sweep, name: str, uri: str, storage: str, log) -> tuple[int, int]:
    """(runs trained now, runs of trials completed before); the Optuna study resumes itself."""
    settings = StudySettings(
        storage=storage,
        study_name=name,
        n_trials=sweep.n_trials,
        tracking_uri=uri,
        mlflow_experiment=SWEEP,
    )
    study, parent = prepare_study(sweep, settings)
    complete = (TrialState.COMPLETE,)
    before = len(study.get_trials(deepcopy=False, states=complete))
    log(f"{SWEEP}: {before} of {sweep.n_trials} trial(s) already complete (study {name!r})")
    work(sweep, settings, log=log)
    finish(study, settings, parent)
    after = len(study.get_trials(deepcopy=False, states=complete))
    return (after - before) * len(sweep.seeds), before * len(sweep.seeds)
