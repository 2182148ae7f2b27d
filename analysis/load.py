"""Runs, params, tags and metric histories from an MLflow store, as tidy pandas tables.

analysis reads the tracking store only: from `harness` it imports the metric names and the
store resolver, never training code (an import-linter contract in pyproject.toml). Column
names follow `mlflow.search_runs`: `params.<dotted name>`, `tags.<name>`, `metrics.<name>`
(a metric's latest value, which for the harness is its value at the final step).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from harness.config import tags as tag
from harness.config.errors import UserError
from harness.config.metrics import (
    EVAL_GOLD_REWARD,
    EVAL_GOLD_REWARD_EXACT,
    EVAL_KL,
    EVAL_KL_EXACT,
    EVAL_PAIR_ACCURACY,
    eval_rewards,
)
from harness.config.space import SPACE_PARAM_PREFIX
from harness.infra.databases import mask
from harness.infra.locations import resolve_tracking_uri, sqlite_path
from harness.infra.stores import all_runs, open_store

# Metrics the figures plot against step; only these histories are fetched (one call each).
HISTORY_KEYS = (
    EVAL_GOLD_REWARD,
    EVAL_GOLD_REWARD_EXACT,
    EVAL_KL,
    EVAL_KL_EXACT,
    eval_rewards("chosen"),
    eval_rewards("rejected"),
    eval_rewards("margins"),
    EVAL_PAIR_ACCURACY,
)
# Written by the exact world (World.run_artifacts) into every run: columns beta, kl, reward.
FRONTIER_ARTIFACT = "frontier/optimal_frontier.csv"
FRONTIER_COLUMNS = ("beta", "kl", "reward")
LABELS = ["method", "beta", "seed", "run_name"]  # run columns joined onto history tables
SWEEP_COLUMNS = ["sweep", "storage", "experiment", "direction", "space", "start_time"]


class AnalysisError(UserError, ValueError):
    """A store, experiment, run or artifact that analysis cannot read as asked: one line, exit 2."""


@dataclass(frozen=True)
class RunData:
    """What the figures and tables are drawn from.

    runs: one row per finished run (sweep parents excluded), sorted by experiment, run name,
        start time: run_id, experiment, run_name, start_time, seconds (wall time from MLflow's
        start and end times), method, dataset, beta, seed, then
        params.*, tags.*, metrics.* columns.
    history: long table run_id, key, step, value of the HISTORY_KEYS, sorted.
    optimal_frontiers: dataset -> the analytic frontier (beta, kl, reward sorted by kl).
    sweeps: one row per sweep parent run: sweep, storage (password masked), experiment,
        direction, space (JSON: the parent run's space.<key> params, for
        `harness.config.space.space_from_params`), start_time.
    """

    runs: pd.DataFrame
    history: pd.DataFrame
    optimal_frontiers: dict[str, pd.DataFrame] = field(default_factory=dict)
    sweeps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SWEEP_COLUMNS))
    unfinished: int = 0  # runs left out because they failed or are still running
    superseded: int = 0  # older runs of a name rerun later in the same experiment, left out
    # curves() by keys and paths_by_seed() by (x, y): a claim compares several method pairs
    # on the same curves
    _curves: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _paths: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def datasets(self) -> list[str]:
        return sorted(self.runs["dataset"].unique()) if len(self.runs) else []

    def for_dataset(self, dataset: str) -> RunData:
        runs = self.runs[self.runs["dataset"] == dataset]
        history = self.history[self.history["run_id"].isin(runs["run_id"])]
        frontiers = {k: v for k, v in self.optimal_frontiers.items() if k == dataset}
        return RunData(runs=runs, history=history, optimal_frontiers=frontiers)

    def select(self, mask) -> RunData:
        """The runs where `mask` (a boolean Series over `runs`) holds, with their history."""
        runs = self.runs[mask]
        history = self.history[self.history["run_id"].isin(runs["run_id"])]
        datasets = set(runs["dataset"]) if "dataset" in runs else set()
        frontiers = {k: v for k, v in self.optimal_frontiers.items() if k in datasets}
        return RunData(runs, history, frontiers, self.sweeps)

    def studies(self) -> RunData:
        """Every run but a sweep's trials (tag role=trial): those get their sweep's figures."""
        roles = self.runs.get(f"tags.{tag.ROLE}", pd.Series(index=self.runs.index))
        return self.select(roles != tag.ROLE_TRIAL)

    def sweep_trials(self, sweep: str) -> RunData:
        """The trial runs of one sweep (tags role=trial, sweep=<name>)."""
        sweeps, roles = f"tags.{tag.SWEEP}", f"tags.{tag.ROLE}"
        if sweeps not in self.runs:
            return self.select(pd.Series(False, index=self.runs.index))
        return self.select((self.runs[sweeps] == sweep) & (self.runs[roles] == tag.ROLE_TRIAL))

    def has_metric(self, key: str) -> bool:
        column = f"metrics.{key}"
        return column in self.runs and self.runs[column].notna().any()

    def curves(self, keys: list[str]) -> pd.DataFrame:
        """History of `keys` as one row per (run, step), a column per key, with run labels (a
        copy of the table made the first time: the data is read-only once loaded)."""
        key = tuple(keys)
        if key not in self._curves:
            self._curves[key] = self._wide(keys)
        return self._curves[key].copy()

    def paths_by_seed(self, x: str, y: str) -> dict[str, dict[float, list]]:
        """method -> seed -> one (x, y) pair of arrays per run, from the runs' evaluations
        that logged both: seeds and runs in order, a run's points by step. Computed once per
        (x, y) (a claim measures several method pairs on the same paths); the arrays are
        read-only."""
        if (x, y) not in self._paths:
            self._paths[x, y] = self._paths_by_seed(x, y)
        return self._paths[x, y]

    def _paths_by_seed(self, x: str, y: str) -> dict[str, dict[float, list]]:
        points = self.curves([x, y]).dropna(subset=[x, y])
        xs, ys = points[x].to_numpy(), points[y].to_numpy()
        paths: dict[str, dict[float, list]] = {}
        # positions, not sub-frames: 8x faster
        positions = points.groupby(["method", "seed", "run_id"]).indices
        for (method, seed, _run), rows in sorted(positions.items(), key=lambda item: item[0]):
            path = (xs[rows], ys[rows])
            for values in path:
                values.flags.writeable = False
            paths.setdefault(method, {}).setdefault(seed, []).append(path)
        return paths

    def _wide(self, keys: list[str]) -> pd.DataFrame:
        long = self.history[self.history["key"].isin(keys)]
        if long.empty:
            return pd.DataFrame(columns=["run_id", "step", *keys, *LABELS])
        # pivot_table's result (the mean of repeated steps, keys in name order) at half its cost
        wide = long.groupby(["run_id", "step", "key"])["value"].mean().unstack("key")
        wide = wide.reset_index().rename_axis(columns=None)
        for key in keys:
            if key not in wide:
                wide[key] = np.nan
        return wide.merge(self.runs[["run_id", *LABELS]], on="run_id").sort_values(
            ["method", "beta", "run_id", "step"], ignore_index=True
        )


def check_store_exists(uri: str) -> None:
    """A SQLite store that does not exist is an error (opening it would create an empty one)."""
    if (db := sqlite_path(uri)) is not None and not db.exists():
        raise FileNotFoundError(
            f"no MLflow store at {mask(uri)}: run `harness run ...` first or pass --tracking-uri"
        )


def open_for_reading(tracking_uri: str | None) -> str:
    """The store a reading command names (its flag, $MLFLOW_TRACKING_URI or the default),
    checked to exist, with the runs whose process died marked KILLED so that none is read as
    live; returns its URI."""
    uri = resolve_tracking_uri(tracking_uri)
    check_store_exists(uri)
    open_store(uri, writable=False)
    return uri


def load_runs(
    uri: str, experiments: list[str] | None = None, extra_history: tuple[str, ...] = ()
) -> RunData:
    """Read the runs of `experiments` (default: every experiment in the store), with the
    histories of HISTORY_KEYS and of `extra_history`."""
    check_store_exists(uri)
    client = MlflowClient(uri)
    chosen = _experiments(client, experiments)
    runs, parents, unfinished = [], [], 0
    for name, experiment_id in chosen:
        for run in all_runs(client, [experiment_id]):
            tags = run.data.tags
            if tags.get(tag.ROLE) == tag.ROLE_SWEEP_PARENT:
                space = {
                    k: v for k, v in run.data.params.items() if k.startswith(SPACE_PARAM_PREFIX)
                }
                parents.append(
                    {
                        "sweep": tags.get(tag.SWEEP),
                        "storage": tags.get(tag.OPTUNA_STORAGE),
                        "experiment": name,
                        "direction": run.data.params.get("direction", "maximize"),
                        "space": json.dumps(space, sort_keys=True),
                        "start_time": run.info.start_time,
                    }
                )
            elif run.info.status != "FINISHED":
                unfinished += 1
            else:
                runs.append((name, run))
    latest = _latest_by_name(runs)
    frame = _run_frame(latest)
    history = _history(client, latest, (*HISTORY_KEYS, *extra_history))
    frontiers = _optimal_frontiers(client, frame)
    sweeps = pd.DataFrame(parents, columns=SWEEP_COLUMNS).drop_duplicates(["sweep", "experiment"])
    sweeps = sweeps.sort_values(["sweep", "experiment"], ignore_index=True)
    return RunData(frame, history, frontiers, sweeps, unfinished, len(runs) - len(latest))


def experiment_names(uri: str) -> set[str]:
    """The names of the MLflow experiments in the store at `uri` (empty if there is no store)."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return set()
    return {e.name for e in MlflowClient(uri).search_experiments()}


def _latest_by_name(runs):
    """A rerun (same experiment, same run name: `make demo` twice) replaces the earlier run,
    so that reruns are not counted as extra seeds."""
    latest = {}
    for name, run in runs:
        key = (name, run.info.run_name)
        if key not in latest or run.info.start_time > latest[key][1].info.start_time:
            latest[key] = (name, run)
    return list(latest.values())


def _experiments(client: MlflowClient, names: list[str] | None) -> list[tuple[str, str]]:
    existing = {e.name: e.experiment_id for e in client.search_experiments()}
    if not names:
        return sorted(existing.items())
    missing = [n for n in names if n not in existing]
    if missing:
        raise AnalysisError(
            f"no MLflow experiment named {', '.join(map(repr, missing))}; "
            f"the store has: {', '.join(sorted(existing)) or 'none'}"
        )
    return [(n, existing[n]) for n in sorted(set(names))]


def _run_frame(runs) -> pd.DataFrame:
    rows = []
    for experiment, run in runs:
        params, tags = run.data.params, run.data.tags
        row = {
            "run_id": run.info.run_id,
            "experiment": experiment,
            "run_name": run.info.run_name,
            "start_time": run.info.start_time,
            "seconds": (run.info.end_time - run.info.start_time) / 1000,
            "method": tags.get(tag.METHOD) or params.get("method") or "unknown",
            "dataset": tags.get(tag.DATASET) or params.get("dataset") or "unknown",
            "beta": _float(params.get("beta")),
            "seed": _float(params.get("train.seed")),
        }
        row |= {f"params.{k}": v for k, v in params.items()}
        row |= {f"tags.{k}": v for k, v in tags.items() if not k.startswith("mlflow.")}
        row |= {f"metrics.{k}": v for k, v in run.data.metrics.items()}
        rows.append(row)
    fixed = [
        "run_id",
        "experiment",
        "run_name",
        "start_time",
        "seconds",
        "method",
        "dataset",
        "beta",
        "seed",
    ]
    frame = pd.DataFrame(rows, columns=None if rows else fixed)
    rest = sorted(c for c in frame.columns if c not in fixed)
    frame = frame[fixed + rest].sort_values(["experiment", "run_name", "start_time", "run_id"])
    return frame.reset_index(drop=True)


def _float(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return np.nan


def _history(client: MlflowClient, runs, keys: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    for _, run in runs:
        for key in dict.fromkeys(keys):
            if key not in run.data.metrics:
                continue
            # A step logged twice keeps its latest value.
            points = sorted(
                client.get_metric_history(run.info.run_id, key), key=lambda m: (m.step, m.timestamp)
            )
            latest = {m.step: m.value for m in points}
            rows += [(run.info.run_id, key, step, value) for step, value in latest.items()]
    history = pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])
    return history.sort_values(["run_id", "key", "step"], ignore_index=True)


def _optimal_frontiers(client: MlflowClient, runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per dataset, the frontier artifact of its first run (in table order) that has one."""
    frontiers: dict[str, pd.DataFrame] = {}
    if "metrics.eval/kl_exact" not in runs:
        return frontiers
    exact = runs[runs["metrics.eval/kl_exact"].notna()]
    for dataset, group in exact.groupby("dataset", sort=True):
        for run_id in group["run_id"]:
            folder = FRONTIER_ARTIFACT.rsplit("/", 1)[0]
            if FRONTIER_ARTIFACT in {a.path for a in client.list_artifacts(run_id, folder)}:
                frontiers[dataset] = read_frontier(client, run_id)
                break
    return frontiers


def read_frontier(client: MlflowClient, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory(prefix="analysis-") as folder:
        path = client.download_artifacts(run_id, FRONTIER_ARTIFACT, folder)
        frame = pd.read_csv(path)
    missing = [c for c in FRONTIER_COLUMNS if c not in frame]
    if missing:
        raise AnalysisError(
            f"run {run_id} artifact {FRONTIER_ARTIFACT}: missing column(s) {', '.join(missing)}; "
            f"expected {', '.join(FRONTIER_COLUMNS)}"
        )
    return frame[list(FRONTIER_COLUMNS)].sort_values("kl", ignore_index=True)
