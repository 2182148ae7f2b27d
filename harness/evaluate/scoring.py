"""Scoring a trained policy: win rates and lm-eval benchmarks, logged into its MLflow run.

`prepare_scoring` checks everything a user can get wrong (task names, task folder, judges,
temperatures) and trains or loads the reward model before any run is opened or written;
`Scoring.score` computes every number first and logs them together at the end, so a failure
leaves nothing half-logged. It logs through the client by run id and never (re)opens the run,
so scoring a finished run later (`harness eval`) never changes its status or end time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from harness.config import tags as tag
from harness.config.metrics import BENCH_PREFIX, CI_HIGH, CI_LOW, RM_ACCURACY, WINRATE_PREFIX
from harness.config.spec import (
    AS_CONFIGURED,
    Experiment,
    ScoringRequest,
    SpecError,
    validate_scoring,
)
from harness.data.preference import DataError, PreferenceData
from harness.evaluate import bench, winrate
from harness.methods.checks import ResolvedExperiment
from harness.methods.reward_model import RewardModel, reward_model_for

RM_SEED = 0  # one judge per study: every run (any training seed) is judged by the same model


@dataclass
class Scoring:
    exp: Experiment
    data: PreferenceData
    temperatures: tuple[float, ...]
    judges: tuple[str, ...]  # those this dataset allows
    plan: bench.BenchPlan | None
    reward_model: RewardModel | None
    reference_source: str
    log: Callable[[str], None] = print

    @property
    def wanted(self) -> bool:
        return bool(self.judges and self.temperatures) or bool(self.plan and self.plan.tasks)

    def describe(self) -> str:
        parts = []
        if self.judges:
            temps = ",".join(f"{t:g}" for t in self.temperatures)
            parts.append(f"winrate judges={','.join(self.judges)} temperatures={temps}")
        if self.plan and self.plan.tasks:
            parts.append(f"bench tasks={','.join(self.plan.tasks)}")
        return "; ".join(parts) or "nothing"

    def score(
        self, client: MlflowClient, run_id: str, contestants: winrate.Contestants, *, step: int
    ) -> dict[str, float]:
        """Compute win rates and benchmarks, then log them through `client` into run `run_id`
        at `step`."""
        started = time.perf_counter()
        metrics, table = self._win_rates(contestants) if self.judges else ({}, None)
        bench_metrics, results = self._bench(contestants)
        metrics |= bench_metrics
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(name, value, now, step) for name, value in metrics.items()],
            tags=[RunTag(tag.SCORING, self.describe())],
        )
        if table is not None:
            client.log_table(
                run_id, completions_table(table), artifact_file="winrate/completions.json"
            )
        for who, result in results.items():
            name = "results.json" if who == "policy" else "results_reference.json"
            client.log_dict(run_id, result, f"bench/{name}")
        seconds = time.perf_counter() - started
        self.log(f"[{self.exp.name}] scored in {seconds:.1f}s: " + summarize(metrics))
        return metrics

    def _win_rates(self, contestants: winrate.Contestants) -> tuple[dict[str, float], dict]:
        """The win rates by every judge (and the reward model's accuracy), and their table."""
        metrics: dict[str, float] = {}
        judges = {}
        if "rm" in self.judges:
            judges["rm"] = self.reward_model.score
            metrics[RM_ACCURACY] = self.reward_model.accuracy
        if "gold" in self.judges:
            judges["gold"] = self.data.gold
        prompts = self.data.eval_prompts[: self.exp.eval.n_prompts]
        plan = winrate.SamplingPlan(
            self.temperatures, self.exp.eval.max_new_tokens, seed=self.exp.train.seed
        )
        rates, table = winrate.win_rates(
            contestants,
            plan,
            prompts=prompts,
            chosen=winrate.chosen_responses(self.data, prompts),
            judges=judges,
        )
        return metrics | rates, table

    def _bench(self, contestants: winrate.Contestants) -> tuple[dict[str, float], dict]:
        """The lm-eval metrics of the policy and the reference, and their results by who."""
        if not (self.plan and self.plan.tasks):
            return {}, {}
        tokenizer = contestants.tokenizer
        results = {
            "policy": bench.run_bench(self.plan, contestants.policy, tokenizer),
            "reference": bench.reference_results(
                self.plan, contestants.reference, tokenizer, self.reference_source, log=self.log
            ),
        }
        metrics = bench.bench_metrics(results["policy"])
        metrics |= bench.bench_metrics(results["reference"], suffix="_reference")
        return metrics, results


def completions_table(table: dict[str, list]) -> dict[str, list]:
    """The judged completions, keyed first by a row id that is the same in every run scored on
    the same prompts (`p007 t0.5`: prompt 7 at temperature 0.5), so MLflow's cross-run artifact
    view lines runs up; `scored_at` last (MLflow appends when a run is scored again)."""
    temperatures = table["temperature"]  # one block of the same prompts per temperature
    n_prompts = temperatures.count(temperatures[0])
    ids = [f"p{i % n_prompts:03d} t{t:g}" for i, t in enumerate(temperatures)]
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    return {"prompt_id": ids} | table | {"scored_at": [stamp] * len(ids)}


def summarize(metrics: dict[str, float]) -> str:
    """One line: the headline win rates, the judge's accuracy, the policy's lm-eval scores."""
    parts = [
        f"{name.removeprefix(WINRATE_PREFIX)} {value:.2f}"
        for name, value in metrics.items()
        if name.startswith(WINRATE_PREFIX)
        and name.count("/") == 2
        and not name.endswith((CI_LOW, CI_HIGH))
    ]
    if RM_ACCURACY in metrics:
        parts.append(f"rm acc {metrics[RM_ACCURACY]:.2f}")
    parts += [
        f"{name.removeprefix(BENCH_PREFIX)} {value:.3g}"
        for name, value in metrics.items()
        if name.startswith(BENCH_PREFIX) and not name.endswith(("_stderr", "_reference"))
    ]
    return "  ".join(parts)


def prepare_scoring(
    resolved: ResolvedExperiment,
    data: PreferenceData,
    request: ScoringRequest = AS_CONFIGURED,
    *,
    log=print,
) -> Scoring:
    """What to score for `exp` (`request` overrides its eval settings), checked up front."""
    exp = resolved.experiment
    ev = exp.eval
    winrate_on = ev.winrate if request.winrate is None else request.winrate
    temperatures = tuple(ev.temperatures if request.temperatures is None else request.temperatures)
    judges = ev.judges if request.judges is None else request.judges
    asked = tuple(judges) if winrate_on else ()
    validate_scoring(temperatures, asked)
    usable = tuple(j for j in asked if j != "gold" or data.gold is not None)
    notes = [f"{data.source} has no gold reward: judge 'gold' skipped"] if usable != asked else []
    if asked and not usable:
        raise SpecError(f"no judge can score {data.source}: it has no gold reward; use judge 'rm'")
    if usable and not all(isinstance(p, str) for p in data.eval_prompts):
        raise DataError(
            f"{data.source}: win rates on conversational prompts are not supported yet; "
            "set eval.winrate=False (the eval/... metrics work on them)"
        )
    tasks = tuple(ev.tasks if request.tasks is None else request.tasks)
    include_path = ev.include_path if request.include_path is None else request.include_path
    plan = None
    if tasks:
        world = getattr(data.world, "name", None)
        plan = bench.plan_bench(tasks, include_path=include_path, world=world, limit=ev.bench_limit)
        if not plan.tasks:
            notes.append(f"{data.source} ships no lm-eval tasks: 'world' expanded to none")
    reward_model = None
    if "rm" in usable:
        reward_model = reward_model_for(data, backbone=ev.rm_backbone, seed=RM_SEED, log=log)
    world_model = exp.model.name_or_path == "world" and data.world is not None
    source = data.world.reference_path if world_model else exp.model.name_or_path
    for note in notes:
        log(f"[{exp.name}] scoring: {note}")
    return Scoring(
        exp=exp,
        data=data,
        temperatures=temperatures,
        judges=usable,
        plan=plan,
        reward_model=reward_model,
        reference_source=str(source),
        log=log,
    )
