"""Optuna behaviour a sweep's claim relies on beyond Optuna's documented API, held to the pinned
version: each test fails naming the installed version when Optuna changes it."""

import optuna
import pytest
from optuna.storages import InMemoryStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from harness.run.sweep.params import FIXED_PARAMS
from harness.run.sweep.study import with_fixed_params
from harness.run.sweep.trial import RETRY

CHANGED = f"optuna {optuna.__version__} changed what harness.run.sweep.study.claim_trial relies on"


STORAGE = InMemoryStorage  # the claim's calls are BaseStorage's: any storage answers them


@pytest.fixture
def storage():
    return STORAGE()


@pytest.fixture
def study(storage):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage)


def claimed(study: optuna.Study, storage) -> tuple[optuna.Trial, int]:
    """One enqueued trial popped by ask(), as a worker claims it, and its storage id."""
    study.enqueue_trial({})
    trial = study.ask()
    study_id = storage.get_study_id_from_name(study.study_name)
    return trial, storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)


def test_enqueued_values_are_the_fixed_params_system_attribute(study):
    study.enqueue_trial({"beta": 0.5})
    attrs = study.get_trials(deepcopy=False)[0].system_attrs
    assert attrs.get(FIXED_PARAMS) == {"beta": 0.5}, (
        f"{CHANGED}: enqueue_trial no longer keeps the values in system attribute "
        f"{FIXED_PARAMS!r} (system attributes: {attrs})"
    )


def test_a_claimed_trial_given_fixed_params_suggests_them(study, storage):
    trial, trial_id = claimed(study, storage)
    fixed = with_fixed_params(study, storage, trial_id, {"beta": 0.25})
    assert fixed.number == trial.number
    assert fixed.suggest_float("beta", 0.0, 1.0) == 0.25, (
        f"{CHANGED}: a Trial built after system attribute {FIXED_PARAMS!r} is set no longer "
        "suggests those values (with_fixed_params)"
    )
    study.tell(fixed, 1.0)
    assert study.trials[0].params == {"beta": 0.25}, CHANGED


def test_a_retry_carries_the_failed_trials_values_and_number(study, storage):
    trial, trial_id = claimed(study, storage)
    with_fixed_params(study, storage, trial_id, {"beta": 0.25}).suggest_float("beta", 0.0, 1.0)
    study.tell(trial.number, state=TrialState.FAIL)
    RETRY(study, study.get_trials(deepcopy=False)[trial.number])
    retry = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert len(retry) == 1, (
        f"{CHANGED}: RetryHeartbeatStaleTrialCallback enqueued {len(retry)} trials"
    )
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry[0]) == trial.number, CHANGED
    assert retry[0].params == {"beta": 0.25}, (
        f"{CHANGED}: a retry no longer carries the failed trial's values in its params "
        f"(got {retry[0].params})"
    )
