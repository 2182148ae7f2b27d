"""Optuna's journal storage (`--storage journal:PATH`), with the heartbeats RDBStorage has.

A journal is one append-only file that every worker reads and writes (Optuna's
`JournalFileBackend`, locked by symlink: its recommendation for many processes on a shared file
system such as NFS, where there is no database server). Optuna 5 keeps heartbeats only in
RDBStorage, so a dead worker's trial would stay RUNNING forever; here each heartbeat is a trial
system attribute (the wall-clock time of the worker's node), and a RUNNING trial whose latest
one is older than the grace period is stale, failed and retried as on a database.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import optuna
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat  # not re-exported; RDBStorage's base too
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

HEARTBEAT_ATTR = "harness:heartbeat"  # Unix seconds of the trial's latest heartbeat


class JournalHeartbeatStorage(JournalStorage, BaseHeartbeat):
    """A JournalStorage on `path` whose RUNNING trials beat every `heartbeat_interval` seconds."""

    def __init__(
        self,
        path: str,
        heartbeat_interval: int,
        grace_period: int,
        stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ):
        super().__init__(JournalFileBackend(path))
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        # The trial may have finished a moment ago (its worker told Optuna before the heartbeat
        # thread stopped): nothing left to keep alive.
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            if now - trial.system_attrs.get(HEARTBEAT_ATTR, started) > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.stale_trial_callback
