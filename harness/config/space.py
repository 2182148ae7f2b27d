"""Sweeps as data: a base experiment plus a search space keyed by dotted experiment names.

The keys (`beta`, `train.lr`, `method_args.gamma`) are used unchanged as Optuna parameter
names, MLflow params and analysis columns. The structure is validated at construction;
names that need a registry (methods, their settings, the objective's metric) are checked by
`harness.methods.checks.check_sweep` before any storage is opened or any trial trained.
"""

from __future__ import annotations

import json
import math
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.config.errors import UserError
from harness.config.metrics import EVAL_GOLD_REWARD
from harness.config.registry import did_you_mean
from harness.config.spec import Experiment, SpecError, field_paths


class SweepError(UserError, ValueError):
    """A sweep that cannot run; the message names the key or setting at fault."""


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def check(self, key: str) -> None:
        if not self.low < self.high:
            raise SweepError(f"space[{key!r}]: low must be < high, got {self.low} >= {self.high}")

    def suggest(self, trial, key: str):
        return trial.suggest_float(key, self.low, self.high)

    def values(self):
        return (self.low, self.high)


@dataclass(frozen=True)
class LogUniform(Uniform):
    def check(self, key: str) -> None:
        super().check(key)
        if self.low <= 0:
            raise SweepError(
                f"space[{key!r}]: a log scale needs positive bounds, got low={self.low}"
            )

    def suggest(self, trial, key: str):
        return trial.suggest_float(key, self.low, self.high, log=True)


@dataclass(frozen=True)
class IntUniform(Uniform):
    log: bool = False

    def check(self, key: str) -> None:
        super().check(key)
        if self.log and self.low <= 0:
            raise SweepError(
                f"space[{key!r}]: a log scale needs positive bounds, got low={self.low}"
            )
        if int(self.low) != self.low or int(self.high) != self.high:
            raise SweepError(f"space[{key!r}]: IntUniform bounds must be integers")

    def suggest(self, trial, key: str):
        return trial.suggest_int(key, int(self.low), int(self.high), log=self.log)


@dataclass(frozen=True)
class Choice:
    options: tuple

    def __init__(self, options):
        object.__setattr__(self, "options", tuple(options))

    def check(self, key: str) -> None:
        if not self.options:
            raise SweepError(f"space[{key!r}]: {type(self).__name__} needs at least one value")
        if len(set(map(repr, self.options))) != len(self.options):
            raise SweepError(f"space[{key!r}]: repeated values in {list(self.options)}")

    def suggest(self, trial, key: str):
        return trial.suggest_categorical(key, list(self.options))

    def values(self):
        return self.options


class Grid(Choice):
    """Every value is tried once, by Optuna's GridSampler (all space entries must be Grid)."""


@dataclass(frozen=True)
class When:
    """A parameter that exists only when other parameters have given values.

    `When({"method": "simpo"}, Uniform(0.5, 1.6))` samples the key only in SimPO trials; other
    trials keep the base experiment's value.
    """

    condition: Mapping[str, Any]
    distribution: Any

    def __post_init__(self):
        object.__setattr__(self, "condition", types.MappingProxyType(dict(self.condition)))

    def applies(self, params: Mapping[str, Any]) -> bool:
        return all(params.get(k) == v for k, v in self.condition.items())


SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True, kw_only=True)
class Sweep:
    name: str
    base: Experiment
    space: Mapping[str, Any]
    objective: str = EVAL_GOLD_REWARD
    direction: str = "maximize"
    n_trials: int = 20
    seeds: tuple[int, ...] = (0,)  # every trial trains each seed; the objective is their mean
    sampler: str = "tpe"
    pruner: str = "median"
    sampler_seed: int = 0  # the sampler's own randomness, so a study is reproducible

    def __post_init__(self):
        object.__setattr__(self, "space", types.MappingProxyType(dict(self.space)))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        validate_sweep(self)

    def grid_size(self) -> int:
        return math.prod(len(d.options) for d in self.space.values())

    def experiment_for(self, params: Mapping[str, Any], seed: int) -> Experiment:
        """The base experiment with a trial's parameters and one seed applied."""
        return self.base.replace({**params, "train.seed": seed})

    def describe(self) -> dict[str, str]:
        """The space as MLflow params, JSON: `space.beta` -> `{"log_uniform": [0.01, 1.0]}`."""
        return {f"{SPACE_PARAM_PREFIX}{k}": json.dumps(_as_json(v)) for k, v in self.space.items()}


SPACE_PARAM_PREFIX = "space."  # a sweep parent run's params: space.<dotted key> -> JSON


def _kind(cls) -> str:
    """A distribution class's name in the JSON: snake case (LogUniform -> log_uniform)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def _as_json(dist) -> dict:
    """A distribution as plain JSON data named by its kind (snake case of the class name)."""
    kind = _kind(type(dist))
    if isinstance(dist, When):
        return {"when": dict(dist.condition), "then": _as_json(dist.distribution)}
    if isinstance(dist, Choice):
        return {kind: list(dist.options)}
    if isinstance(dist, IntUniform) and dist.log:
        return {kind: [dist.low, dist.high], "log": True}
    return {kind: [dist.low, dist.high]}


def space_from_params(params: Mapping[str, str]) -> dict[str, Any]:
    """The space that `Sweep.describe()` wrote, read back from a parent run's params (others,
    such as `direction`, are passed over): `space_from_params(sweep.describe()) == sweep.space`.
    Raises SweepError naming the param whose text is not a distribution."""
    space = {}
    for name, text in params.items():
        if name.startswith(SPACE_PARAM_PREFIX):
            try:
                space[name.removeprefix(SPACE_PARAM_PREFIX)] = _from_json(json.loads(text))
            except (ValueError, TypeError, KeyError, StopIteration) as err:
                raise SweepError(
                    f"{name}: not a distribution that Sweep.describe() writes, got {text!r} ({err})"
                ) from None
    return space


_KINDS = {_kind(cls): cls for cls in (Uniform, LogUniform, IntUniform, Choice, Grid)}


def _from_json(data: dict):
    """`_as_json` inverted. JSON has no tuples: lists in values become tuples, as experiment
    fields hold them (`Choice([("rm",), ("gold",)])` for eval.judges)."""
    if "when" in data:
        condition = {key: _tuples(value) for key, value in data["when"].items()}
        return When(condition, _from_json(data["then"]))
    kind = next(iter(data))  # the first key; IntUniform may add "log"
    cls, args = _KINDS[kind], data[kind]
    if issubclass(cls, Choice):
        return cls([_tuples(option) for option in args])
    low, high = args
    if cls is IntUniform:
        return IntUniform(low, high, log=data.get("log", False))
    return cls(low, high)


def _tuples(value):
    return tuple(map(_tuples, value)) if isinstance(value, list) else value


def validate_sweep(sweep: Sweep) -> None:
    if not sweep.name:
        raise SweepError("name: a sweep needs a name (it names the Optuna study)")
    if not isinstance(sweep.base, Experiment):
        raise SweepError(f"base must be an Experiment, got {type(sweep.base).__name__}")
    if not sweep.space:
        raise SweepError(
            "space is empty: map at least one dotted experiment name to a distribution"
        )
    for label, value, allowed in (
        ("sampler", sweep.sampler, SAMPLERS),
        ("pruner", sweep.pruner, PRUNERS),
        ("direction", sweep.direction, DIRECTIONS),
    ):
        if value not in allowed:
            raise SweepError(
                f"{label} must be one of {allowed}, got {value!r}" + did_you_mean(value, allowed)
            )
    if sweep.n_trials < 1:
        raise SweepError(f"n_trials must be >= 1, got {sweep.n_trials}")
    if not sweep.seeds or any(not isinstance(s, int) or s < 0 for s in sweep.seeds):
        raise SweepError(f"seeds must be a non-empty tuple of integers >= 0, got {sweep.seeds}")
    for key, dist in sweep.space.items():
        _check_entry(sweep, key, dist)
    grids = [isinstance(d, Grid) for d in sweep.space.values()]
    if sweep.sampler == "grid" or any(grids):
        if not all(grids) or sweep.sampler != "grid":
            raise SweepError(
                "a grid sweep needs sampler='grid' and Grid(...) for every space entry"
            )
        if sweep.n_trials > sweep.grid_size():
            raise SweepError(
                f"n_trials={sweep.n_trials} exceeds the {sweep.grid_size()} grid points"
            )


def _check_entry(sweep: Sweep, key: str, dist) -> None:
    base = sweep.base
    if isinstance(dist, When):
        for cond_key in dist.condition:
            if cond_key not in sweep.space:
                raise SweepError(
                    f"space[{key!r}]: condition on {cond_key!r}, which the space does not sample"
                )
        try:
            base = base.replace(dict(dist.condition))
        except SpecError as err:
            raise SweepError(f"space[{key!r}]: condition {dict(dist.condition)}: {err}") from None
        dist = dist.distribution
    known = field_paths(base)
    if key not in known and not key.startswith("method_args."):  # checked with the registry
        raise SweepError(f"space: unknown experiment field {key!r}." + did_you_mean(key, known))
    if not hasattr(dist, "suggest"):
        raise SweepError(
            f"space[{key!r}]: expected a distribution (Uniform, LogUniform, IntUniform, "
            f"Choice, Grid, When), got {dist!r}"
        )
    dist.check(key)
    for value in dist.values():  # every value must make a valid experiment
        try:
            base.replace({key: value})
        except SpecError as err:
            raise SweepError(f"space[{key!r}] value {value!r}: {err}") from None


def sample_params(sweep: Sweep, trial) -> dict[str, Any]:
    """Suggest every unconditional entry, then the conditional ones whose condition holds."""
    params: dict[str, Any] = {}
    for key, dist in sweep.space.items():
        if not isinstance(dist, When):
            params[key] = dist.suggest(trial, key)
    for key, dist in sweep.space.items():
        if isinstance(dist, When) and dist.applies(params):
            params[key] = dist.distribution.suggest(trial, key)
    return params


def finite_points(sweep: Sweep, limit: int = 100_000) -> list[dict[str, Any]] | None:
    """Every parameter combination of a space of finite entries (Choice, Grid, IntUniform), in
    `sample_params`'s order; None when an entry is continuous or there are over `limit` points."""
    points: list[dict[str, Any]] = [{}]
    ordered = [(k, d) for k, d in sweep.space.items() if not isinstance(d, When)]
    ordered += [(k, d) for k, d in sweep.space.items() if isinstance(d, When)]
    for key, dist in ordered:
        values = _finite_values(dist.distribution if isinstance(dist, When) else dist, limit)
        if values is None:
            return None
        grown = []
        for point in points:
            if isinstance(dist, When) and not dist.applies(point):
                grown.append(point)  # the key does not exist in this trial
            else:
                grown += [{**point, key: value} for value in values]
        if len(grown) > limit:
            return None
        points = grown
    return points


def _finite_values(dist, limit: int) -> list | None:
    if isinstance(dist, Choice):
        return list(dist.options)
    if isinstance(dist, IntUniform) and dist.high - dist.low < limit:
        return list(range(int(dist.low), int(dist.high) + 1))
    return None
