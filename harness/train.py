"""One experiment -> one trained policy and one MLflow run.

Stages: load and check the data, load policy and reference, open the run (params, tags,
experiment JSON), evaluate the starting point (step 0), train with the method's TRL trainer
while the harness evaluates every `train.eval_every` steps, then evaluate the end point and
save the sample table and the policy.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import mlflow
import torch
from transformers import PrinterCallback, set_seed

from harness import stores
from harness.cache import warm
from harness.callbacks import EvalCallback, MetricsCallback, TrainingDiverged
from harness.checks import check_experiment, check_method_accepts
from harness.data import DataError, PreferenceData, load_preference_data
from harness.devices import default_device, training_arguments
from harness.evaluate import Evaluator
from harness.evaluate.rescore import FINAL_STEP_TAG
from harness.evaluate.scoring import prepare_scoring
from harness.methods import METHODS, flat_params, resolved_args
from harness.metrics import (
    DATA_EVAL_PAIRS,
    DATA_TRAIN_ROWS,
    EVAL_GOLD_REWARD,
    EVAL_KL,
    EVAL_KL_STDERR,
    EVAL_LENGTH,
    EVAL_PAIR_ACCURACY,
    data_filtered,
)
from harness.models import load_causal_lm, load_tokenizer
from harness.spec import Experiment
from harness.trainers import TrainingJob

# Called with (step, eval metrics) after each harness evaluation; returning True stops training.
EvalListener = Callable[[int, dict[str, float]], bool]


@dataclass
class RunResult:
    run_id: str
    experiment: Experiment
    metrics: dict[str, float]  # the final evaluation
    seconds: float


def reference_key(exp: Experiment, data: PreferenceData) -> tuple:
    """What determines the reference model: its source, remote code, device (the warm cache's
    key for it and for everything computed from it)."""
    if exp.model.name_or_path == "world":
        if data.world is None:
            raise DataError(
                f"model.name_or_path='world' needs a built-in world dataset, but {exp.dataset!r} "
                "is a file or hub dataset: set model.name_or_path to a hub id or local path"
            )
        source = data.world.reference_path
    else:
        source = exp.model.name_or_path
    return ("reference", str(source), exp.model.trust_remote_code, str(default_device()))


def load_models(exp: Experiment, data: PreferenceData):
    """(tokenizer, policy, reference): the policy starts as a copy of the reference.

    Both are copies of a pristine model kept on the CPU, which a sweep worker keeps in memory
    across trials (`warm`). A model that went through a trainer is never copied again: the
    trainer's wrappers (accelerate replaces `forward`) would still call the original's weights.
    """
    _, source, remote, device = key = reference_key(exp, data)

    def load():
        tokenizer = load_tokenizer(source, trust_remote_code=remote)
        model = load_causal_lm(source, trust_remote_code=remote).eval().requires_grad_(False)
        return tokenizer, model

    tokenizer, pristine = warm.get(key, load)
    reference = copy.deepcopy(pristine).to(device)
    policy = copy.deepcopy(pristine).to(device).requires_grad_(True)
    return copy.deepcopy(tokenizer), policy, reference


class ExperimentRun:
    """The state of one experiment's run while it trains."""

    def __init__(self, exp: Experiment, evaluator: Evaluator, listeners: list[EvalListener], log):
        self.exp, self.evaluator, self.listeners, self.log = exp, evaluator, listeners, log
        self.metrics: dict[str, float] = {}
        self.last_step = -1
        self.first_table: dict[str, list] = {}

    def evaluate(self, policy, step: int, untrained: bool = False) -> bool:
        if not all(torch.isfinite(p).all() for p in policy.parameters()):
            raise TrainingDiverged(
                f"policy weights became non-finite by step {step}: lower train.lr"
            )
        was_training = policy.training
        metrics, table = self.evaluator.evaluate(policy, untrained=untrained)
        policy.train(was_training)
        mlflow.log_metrics(metrics, step=step)
        self.metrics, self.last_table, self.last_step = metrics, table, step
        self.first_table = self.first_table or table
        self.log(f"[{self.exp.name}] step {step:>4}/{self.exp.train.steps}  " + summarize(metrics))
        return any([listener(step, metrics) for listener in self.listeners])

    def sample_table(self) -> dict[str, list]:
        """Policy samples at the end beside reference samples (step 0) for the same prompts."""
        table = {"prompt": self.last_table["prompt"], "policy": self.last_table["completion"]}
        table["reference"] = self.first_table["completion"]
        if "gold_reward" in self.last_table:
            table["policy_gold"] = self.last_table["gold_reward"]
            table["reference_gold"] = self.first_table["gold_reward"]
        n = self.exp.eval.n_table_rows
        return {k: v[:n] for k, v in table.items()}


def summarize(metrics: dict[str, float]) -> str:
    parts = [f"kl {metrics[EVAL_KL]:.3f}±{metrics[EVAL_KL_STDERR]:.3f}"]
    if EVAL_GOLD_REWARD in metrics:
        parts.append(f"gold {metrics[EVAL_GOLD_REWARD]:+.3f}")
    if EVAL_PAIR_ACCURACY in metrics:
        parts.append(f"pair acc {metrics[EVAL_PAIR_ACCURACY]:.2f}")
    parts.append(f"len {metrics[EVAL_LENGTH]:.1f}")
    return "  ".join(parts)


def run_experiment(
    exp: Experiment,
    *,
    listeners: list[EvalListener] = (),
    tags: dict | None = None,
    parent_run_id: str | None = None,
    log=print,
) -> RunResult:
    """Train and evaluate `exp` in a new MLflow run of the current tracking experiment.

    With `parent_run_id` the run is nested under that run (sweeps), without it being active.
    """
    started = time.perf_counter()
    check_experiment(exp)
    method = METHODS.get(exp.method)
    set_seed(exp.train.seed)
    log(f"[{exp.name}] data: loading {exp.dataset}")
    data = load_preference_data(exp)
    check_method_accepts(method, data)
    tokenizer, policy, reference = load_models(exp, data)
    scoring = prepare_scoring(exp, data, log=log)  # checked (and the judge trained) up front
    filtered = ", ".join(f"{n} {why}" for why, n in data.filtered.items()) or "nothing"
    log(
        f"[{exp.name}] data: {len(data.train)} train rows, {len(data.eval_pairs)} held-out pairs; filtered {filtered}"
    )

    run_tags = {
        "method": exp.method,
        "dataset": exp.dataset,
        "experiment": exp.name,
        "git_sha": stores.git_sha(),
        **(tags or {}),
    }
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    with mlflow.start_run(run_name=exp.name, tags=run_tags) as active:
        try:
            mlflow.log_params({k: stores.param_value(v) for k, v in flat_params(exp).items()})
            mlflow.log_text(exp.to_json(), "experiment.json")
            for artifact, text in (data.world.run_artifacts() if data.world else {}).items():
                mlflow.log_text(text, artifact)
            data_counts = {DATA_TRAIN_ROWS: len(data.train), DATA_EVAL_PAIRS: len(data.eval_pairs)}
            data_counts |= {data_filtered(why): n for why, n in data.filtered.items()}
            mlflow.log_metrics(data_counts, step=0)

            run = ExperimentRun(
                exp,
                Evaluator(exp, data, tokenizer, reference, reference_key(exp, data)),
                list(listeners),
                log,
            )
            stopped_early = run.evaluate(policy, 0, untrained=True)
            if not stopped_early:
                policy = train_policy(exp, method, data, tokenizer, policy, reference, run)
            mlflow.set_tag(FINAL_STEP_TAG, str(run.last_step))
            if scoring.wanted:
                scoring.score(policy, reference, tokenizer, step=run.last_step)
            mlflow.log_table(run.sample_table(), artifact_file="samples.json")
            if exp.train.save_policy:
                save_policy(policy, tokenizer)
        except BaseException as err:
            mlflow.set_tag("error", f"{type(err).__name__}: {err}"[:5000])
            raise
        finally:
            mlflow.flush_async_logging()
    return RunResult(active.info.run_id, exp, run.metrics, time.perf_counter() - started)


def train_policy(exp, method, data, tokenizer, policy, reference, run: ExperimentRun):
    with tempfile.TemporaryDirectory(prefix="harness-trainer-") as output_dir:
        job = TrainingJob(
            policy=policy,
            reference=reference if method.uses_reference else None,
            tokenizer=tokenizer,
            data=data,
            beta=exp.beta,
            method_args=resolved_args(exp),
            max_length=exp.train.max_length,
            seed=exp.train.seed,
            model_source=exp.model.name_or_path,
            reference_cache=exp.train.reference_cache,
            args=trainer_arguments(exp, output_dir),
            callbacks=[
                MetricsCallback(exp.method),
                EvalCallback(run.evaluate, exp.train.eval_every),
            ],
        )
        trainer = method.build(job)
        trainer.remove_callback(PrinterCallback)  # the harness prints its own progress lines
        trainer.train()
        final_step = trainer.state.global_step
    if run.last_step != final_step:  # not when a listener stopped training right after an eval
        run.evaluate(trainer.model, final_step)
    return trainer.model


def trainer_arguments(exp: Experiment, output_dir: str) -> dict:
    """The experiment's training settings as TrainingArguments, shared by every method."""
    t = exp.train
    return training_arguments(
        output_dir,
        max_steps=t.steps,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.log_every or t.steps,
        remove_unused_columns=False,  # ORPO and CPO need their extra columns
    )


def save_policy(policy, tokenizer) -> None:
    """The trained policy (safetensors) and tokenizer as the run's `policy/` artifact."""
    with tempfile.TemporaryDirectory(prefix="harness-policy-") as folder:
        policy.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        mlflow.log_artifacts(folder, artifact_path=stores.POLICY_ARTIFACT)
