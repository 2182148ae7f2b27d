"""Distinct parameters for every trial, whichever worker or machine runs it.

Each trial's sampler is seeded from the sweep's `sampler_seed` and the trial's number, so two
workers never replay the same random draws. Parameters are drawn without being recorded (the
sampler is asked through a stand-in trial), compared with every other trial's, and stored as
the claimed trial's fixed parameters under a lock in the storage, so that concurrent workers
see each other's choices. TPE on a small discrete space keeps proposing its current best point
whatever the seed; once the sampler has only repeated, an untried point of the (finite) space
is taken instead, or a uniform random draw for a continuous one. A repeat happens only when the
space is exhausted. Grid sweeps enqueue their points up front, each once (`grid_points`).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from harness.config.space import Sweep, finite_points, sample_params

SAMPLER_DRAWS = 10  # the sampler's own proposals tried before falling back to untried points
RANDOM_DRAWS = 100  # uniform draws for a continuous space whose sampler only repeated


def trial_seed(sampler_seed: int, number: int, attempt: int = 0) -> int:
    digest = hashlib.sha256(f"{sampler_seed}/{number}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def make_sampler(sweep: Sweep, seed: int):
    """The sweep's sampler for one trial. Grid sweeps get a random sampler: their trials carry
    fixed parameters, so it is never asked (Optuna's GridSampler would stop the study)."""
    if sweep.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def grid_points(sweep: Sweep) -> list[dict[str, Any]]:
    """The grid's points in the order they are enqueued, shuffled by `sampler_seed`."""
    points = finite_points(sweep)
    random.Random(sweep.sampler_seed).shuffle(points)
    return points


class DrawTrial:
    """Stands in for an optuna.Trial: asks a sampler for values without recording them."""

    def __init__(self, sampler, study: optuna.Study, frozen: FrozenTrial):
        self.sampler, self.study, self.frozen = sampler, study, frozen

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False):
        return self._ask(name, FloatDistribution(low, high, log=log))

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False):
        return self._ask(name, IntDistribution(low, high, log=log))

    def suggest_categorical(self, name: str, choices):
        return self._ask(name, CategoricalDistribution(choices))

    def _ask(self, name, distribution):
        return self.sampler.sample_independent(self.study, self.frozen, name, distribution)


# The system attribute where Optuna's enqueue_trial keeps a trial's fixed values; a Trial made
# for that trial suggests them (tests/test_optuna_pins.py holds Optuna to it).
FIXED_PARAMS = "fixed_params"


def params_key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=repr)


def taken_params(study: optuna.Study, number: int) -> set[str]:
    """Parameters of every other trial that ran, runs or waits with fixed parameters (a failed
    trial's are carried by its retry)."""
    taken = set()
    for t in study.get_trials(deepcopy=False):
        params = {**t.system_attrs.get(FIXED_PARAMS, {}), **t.params}
        if t.number != number and t.state != TrialState.FAIL and params:
            taken.add(params_key(params))
    return taken


def choose_params(sweep: Sweep, study: optuna.Study, frozen: FrozenTrial) -> dict[str, Any]:
    """Parameters for the claimed trial `frozen` that no other trial has, unless none is left."""
    taken = taken_params(study, frozen.number)
    for attempt in range(SAMPLER_DRAWS):
        sampler = make_sampler(sweep, trial_seed(sweep.sampler_seed, frozen.number, attempt))
        params = sample_params(sweep, DrawTrial(sampler, study, frozen))
        if params_key(params) not in taken:
            return params
    rng = random.Random(trial_seed(sweep.sampler_seed, frozen.number, SAMPLER_DRAWS))
    points = finite_points(sweep)
    if points is None:
        for _ in range(RANDOM_DRAWS):
            sampler = optuna.samplers.RandomSampler(seed=rng.getrandbits(32))
            params = sample_params(sweep, DrawTrial(sampler, study, frozen))
            if params_key(params) not in taken:
                return params
        return params
    untried = [p for p in points if params_key(p) not in taken]
    return rng.choice(untried) if untried else params  # exhausted: the sampler's proposal
