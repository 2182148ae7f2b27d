"""One experiment -> one trained policy and one MLflow run, in the order it happens.

`run_experiment` is the recipe; the stages below it follow in the same order: resolve the
experiment (checks, defaults, name: once), load and check the data, load policy and reference,
open the run (tags), log what the run is (params, experiment JSON, datasets), evaluate the
starting point (step 0), train with the method's TRL trainer while the harness evaluates every
`train.eval_every` steps, evaluate the end point, save the policy (whole or not at all), the
sample table, and score. Every stage works on one `RunContext`. Whatever happens the run
ends: FAILED on an error, KILLED on Ctrl-C, and if the process is killed outright the next
harness command marks it KILLED from its heartbeat (harness.infra.stores).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.tracking import MlflowClient
from transformers import PrinterCallback, set_seed

from harness.config import tags as tag
from harness.config.errors import RunFailed
from harness.config.metrics import (
    DATA_EVAL_NEW_PAIRS,
    DATA_EVAL_PAIRS,
    DATA_TRAIN_ROWS,
    EVAL_GOLD_REWARD,
    EVAL_KL,
    EVAL_KL_STDERR,
    EVAL_LENGTH,
    EVAL_PAIR_ACCURACY,
    data_filtered,
)
from harness.config.spec import Experiment, SpecError
from harness.data.lora import AdapterDisabled, check_lora_targets, is_peft, lora_config
from harness.data.models import load_causal_lm, load_tokenizer, resolve_dtype, weights_dtype
from harness.data.preference import DataError, PreferenceData, load_preference_data
from harness.data.sequences import context_length
from harness.data.worlds import world_version
from harness.evaluate import Evaluator
from harness.evaluate.best_of_n import BestOfN
from harness.evaluate.scoring import Scoring, prepare_scoring
from harness.evaluate.winrate import Contestants
from harness.infra import distributed, stores
from harness.infra.cache import content_digest
from harness.infra.collector import freeze_long_lived
from harness.infra.console import library_output
from harness.infra.devices import default_device, precision_arguments, training_arguments
from harness.infra.signals import release_cut_statements, signals_ignored
from harness.infra.tracked import TrackedRun, current_experiment_id
from harness.methods.callbacks import (
    DivergenceGuard,
    EvalCallback,
    MetricsCallback,
    TrainingDiverged,
)
from harness.methods.catalog import flat_params, resolved_args
from harness.methods.checks import (
    ResolvedExperiment,
    check_chat_template,
    check_estimable,
    check_method_accepts,
    resolve,
)
from harness.methods.trainers import TrainingJob

# Called with (step, eval metrics) after each harness evaluation; returning True stops training.
EvalListener = Callable[[int, dict[str, float]], bool]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) while a run trained: the run was marked KILLED; the message says which."""


class PolicyNotSaved(RunFailed):
    """The trained policy could not be written (a full or read-only disk); nothing half-written
    is left."""


@dataclass
class RunResult:
    run_id: str | None  # None on the processes other than the main one
    experiment: Experiment
    metrics: dict[str, float]  # the final evaluation
    seconds: float
    uses_beta: bool = True  # whether beta entered training (summaries show "-" otherwise)


@dataclass
class RunContext:
    """What every stage of one run works on, handed from stage to stage."""

    resolved: ResolvedExperiment
    data: PreferenceData
    tokenizer: Any
    policy: Any  # the model being trained; the trained one (a PeftModel with LoRA) after it
    reference: Any  # a frozen copy, or the policy with its LoRA adapter off
    log: Callable[[str], None] = print
    run_id: str | None = None  # the MLflow run, once open (never on the other processes)
    client: MlflowClient | None = None  # the store holding run_id

    @property
    def exp(self) -> Experiment:
        return self.resolved.experiment

    @property
    def tracked(self) -> TrackedRun | None:
        """The run to write to; None before it opens and on the other processes."""
        return TrackedRun(self.client, self.run_id) if self.run_id is not None else None


def run_experiment(
    experiment: Experiment | ResolvedExperiment,
    *,
    listeners: list[EvalListener] = (),
    tags: dict | None = None,
    parent_run_id: str | None = None,
    on_run_created=None,
    log=print,
) -> RunResult:
    """Train and evaluate `experiment` in a new MLflow run of the current tracking experiment.

    Commands pass it resolved (`harness.methods.checks.resolve`, once, before the first run
    trains); library callers may pass a plain Experiment, resolved here.
    With `parent_run_id` the run is nested under that run (sweeps), without it being active.
    `on_run_created(run_id)` is called as soon as the run exists (before training): a caller
    learns which run is this experiment's even when it fails, and knows none exists if it
    failed before.
    Under several processes (accelerate, torchrun) every process trains; only the main one
    talks to MLflow, evaluates, scores and saves, while the others wait (`train_only`).
    """
    started = time.perf_counter()
    freeze_long_lived()  # once a process: its libraries leave every later full collection
    resolved = experiment if isinstance(experiment, ResolvedExperiment) else resolve(experiment)
    set_seed(resolved.experiment.train.seed)
    if not distributed.is_main():
        return train_only(resolved, started)
    data = load_data(resolved, log)
    run = load_models(resolved, data, log)
    scoring = prepare_scoring(resolved, data, log=log)  # checked (and the judge trained) up front
    log_data_summary(run)
    run_tags = {**describing_tags(run), **(tags or {})}
    if parent_run_id:
        run_tags[tag.PARENT_RUN] = parent_run_id
    # In the experiment and store the command chose (stores.use_tracking), written by id.
    tracked = TrackedRun.create(MlflowClient(), current_experiment_id(), resolved.name, run_tags)
    run.client, run.run_id = tracked.client, tracked.run_id
    if on_run_created is not None:
        on_run_created(run.run_id)
    with ended_on_error(run):
        with stores.Heartbeat(run.run_id):
            metrics = train_and_score(run, scoring, listeners)
        tracked.end("FINISHED")
    # The others wait here for the scoring and saving. Not after an error: the main process
    # then exits, and the launcher stops the others wherever they wait.
    distributed.wait_for_everyone()
    seconds = time.perf_counter() - started
    return RunResult(run.run_id, resolved.experiment, metrics, seconds, resolved.method.uses_beta)


def train_and_score(run: RunContext, scoring: Scoring, listeners) -> dict[str, float]:
    """Inside the open run: log what the run is, evaluate, train, evaluate, save, score; the
    final evaluation's metrics.

    The policy is saved right after training, before the sample table and scoring, so a
    failure there leaves a FAILED run whose policy `harness eval` can still score.
    """
    exp = run.exp
    log_description(run)
    evaluation = RunEvaluation(run, list(listeners))
    log_data_counts(run, evaluation.evaluator.counts)
    best_of_n = None  # the policy's sampler where it is not a model of its own
    if run.resolved.method.trains:
        final_step = 0
        stopped_early = evaluation.evaluate(run.policy, 0, untrained=True)
        if not distributed.main_decides(stopped_early):  # a listener may stop it
            run.policy, final_step = train_policy(run, evaluation.evaluate, evaluation.note_loss)
        if evaluation.last_step != final_step:  # not right after a listener stopped training
            evaluation.evaluate(run.policy, final_step)
    else:  # best-of-n: its policy model is the base model (run.policy, untouched) sampled n times
        best_of_n = best_of_n_policy(run)
        evaluation.evaluate_best_of_n(best_of_n)
    run.tracked.set_tag(tag.FINAL_STEP, str(evaluation.last_step))
    if exp.train.save_policy:
        save_policy(run, best_of_n)
    run.tracked.log_table(evaluation.sample_table(), artifact_file="samples.json")
    if scoring.wanted:
        run.log(f"[{exp.name}] scoring: {scoring.describe()}")
        sampler = best_of_n.sample if best_of_n else None
        contestants = Contestants(run.policy, run.reference, run.tokenizer, sampler)
        scoring.score(run.client, run.run_id, contestants, step=evaluation.last_step)
    return evaluation.metrics


def best_of_n_policy(run: RunContext) -> BestOfN:
    """The best of method_args.n samples of the base model by the method's picker; tags the
    run as best-of-n with its n, and its eval/kl as the analytic bound."""
    exp = run.exp
    n = resolved_args(exp)["n"]
    picker = run.resolved.method.picker(
        run.data, exp.model.name_or_path, exp.train.seed, run.tracked
    )
    run.tracked.set_tags({tag.BEST_OF_N: str(n), tag.EVAL_KL_KIND: tag.KL_BOUND})
    return BestOfN(run.policy, run.tokenizer, picker, n)


# ---- data ------------------------------------------------------------------------------------


def load_data(resolved: ResolvedExperiment, log) -> PreferenceData:
    """The experiment's preference data, checked against its method and evaluation."""
    exp = resolved.experiment
    log(f"[{exp.name}] data: loading {exp.dataset}")
    data = load_preference_data(exp)
    check_method_accepts(resolved.method, data)
    check_estimable(exp, data)
    return data


def log_data_summary(run: RunContext) -> None:
    data = run.data
    filtered = ", ".join(f"{n} {why}" for why, n in data.filtered.items()) or "nothing"
    run.log(
        f"[{run.exp.name}] data: {len(data.train)} train rows, {len(data.eval_pairs)} held-out pairs; filtered {filtered}"
    )


# ---- models ----------------------------------------------------------------------------------


def load_models(resolved: ResolvedExperiment, data: PreferenceData, log=print) -> RunContext:
    """The run's context with its tokenizer, policy and reference: the policy starts as the
    reference.

    Full fine-tune: the reference is a second, frozen copy. LoRA: it is the policy's own base
    model with the adapter switched off (`AdapterDisabled`), so the weights are held once.
    The reference is copied before any trainer sees the model: a model that went through a
    trainer is never copied, as the trainer's wrappers (accelerate replaces `forward`) would
    still call the original's weights.
    """
    exp = resolved.experiment
    source, remote = model_source(exp, data), exp.model.trust_remote_code
    device = default_device()
    tokenizer = load_tokenizer(source, trust_remote_code=remote)
    model = load_causal_lm(source, dtype=weights_dtype(exp.model), trust_remote_code=remote)
    model.eval().requires_grad_(False)
    reference = None if exp.model.lora is not None else copy.deepcopy(model).to(device)
    policy = model.to(device).requires_grad_(True)
    if reference is None:
        check_lora_targets(policy, exp.model.lora)
        reference = AdapterDisabled(policy)
    context = context_length(policy)
    if context is not None and exp.train.max_length > context:
        raise SpecError(
            f"train.max_length must be at most the model's context ({context} positions), "
            f"got {exp.train.max_length}"
        )
    check_chat_template(exp, data, tokenizer)
    return RunContext(resolved, data, tokenizer, policy, reference, log)


def model_source(exp: Experiment, data: PreferenceData) -> str:
    """Where the experiment's starting model loads from: the world's model or model.name_or_path."""
    if exp.model.name_or_path != "world":
        return exp.model.name_or_path
    if data.world is None:
        raise DataError(
            f"model.name_or_path='world' needs a built-in world dataset, but {exp.dataset!r} "
            "is a file or hub dataset: set model.name_or_path to a hub id or local path"
        )
    return str(data.world.reference_path)


# ---- the run: open, described, ended ---------------------------------------------------------


def describing_tags(run: RunContext) -> dict[str, str]:
    """What the run is (method, dataset, experiment) and what produced it (provenance)."""
    exp = run.exp
    found = {tag.METHOD: exp.method, tag.DATASET: exp.dataset, tag.EXPERIMENT: exp.name}
    return found | provenance(exp, run.data)


def provenance(exp: Experiment, data: PreferenceData) -> dict[str, str]:
    """What produced the run: the commit, the pinned libraries' versions, the data's
    fingerprint, the world's version, the device and the seed (tags, logged on every run)."""
    found = {
        tag.GIT_SHA: stores.git_sha(),
        tag.DATA_FINGERPRINT: content_digest([data.train, data.eval_pairs]),
        tag.WORLD_VERSION: world_version(exp.dataset),
        tag.DEVICE: default_device(),
        tag.SEED: str(exp.train.seed),
    }
    for name in tag.VERSIONED:
        try:
            found[tag.version_tag(name)] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[tag.version_tag(name)] = "not installed"
    return found


def log_description(run: RunContext) -> None:
    """Params, the experiment's JSON, the dataset inputs, the world's artifacts."""
    exp, data = run.exp, run.data
    tracked = run.tracked
    tracked.log_params({k: stores.param_value(v) for k, v in flat_params(exp).items()})
    tracked.log_params(scale_params(exp))
    tracked.log_text(exp.to_json(), "experiment.json")
    log_datasets(run)
    for artifact, text in (data.world.run_artifacts() if data.world else {}).items():
        tracked.log_text(text, artifact)


def log_data_counts(run: RunContext, held_out_cuts: dict[str, int]) -> None:
    """Rows trained on and held out, rows filtered, and held-out rows the evaluation cut to
    fit the model (step 0 metrics)."""
    data = run.data
    counts = {DATA_TRAIN_ROWS: len(data.train), DATA_EVAL_PAIRS: len(data.eval_pairs)}
    if data.new_pairs:
        counts[DATA_EVAL_NEW_PAIRS] = len(data.new_pairs)
    counts |= {data_filtered(why): n for why, n in data.filtered.items()}
    run.tracked.log_metrics(counts | held_out_cuts, step=0)
    if any(held_out_cuts.values()):
        cut = ", ".join(f"{n} {name.split('/', 1)[1]}" for name, n in held_out_cuts.items() if n)
        run.log(f"[{run.exp.name}] data: held-out rows cut to fit ({cut})")


def scale_params(exp: Experiment) -> dict[str, str]:
    """How the run was spread: processes, and pairs per optimizer step across all of them."""
    processes = distributed.num_processes()
    t = exp.train
    return {
        "processes": str(processes),
        "effective_batch": str(t.batch_size * t.grad_accum * processes),
    }


def log_datasets(run: RunContext) -> None:
    """The training rows and held-out pairs as the run's MLflow dataset inputs."""
    exp, data = run.exp, run.data
    if data.world is not None:
        source, hub = str(data.world.reference_path.parent.resolve()), False
    else:
        local = Path(exp.dataset)
        source, hub = (str(local.resolve()), False) if local.exists() else (exp.dataset, True)
    splits = {"train": data.train, "eval": data.eval_pairs}
    stores.log_dataset_inputs(run.client, run.run_id, exp.dataset, source, splits, hub=hub)


@contextlib.contextmanager
def ended_on_error(run: RunContext):
    """An error ends the run FAILED, Ctrl-C KILLED, each with its `error` tag."""
    try:
        yield
    except KeyboardInterrupt as err:
        end_run_after(err, run.tracked, "KILLED")
        raise RunInterrupted(f"run {run.run_id} ({run.exp.name}) marked KILLED") from None
    except BaseException as err:
        end_run_after(err, run.tracked, "FAILED")
        if stores.unreachable(err):  # a server gone mid-run: one line, not its traceback
            raise stores.store_lost(run.run_id, run.exp.name) from None
        if isinstance(err, RunFailed):
            err.args = (f"run {run.run_id} ({run.exp.name}) FAILED: {err}",)
        raise


def end_run_after(err: BaseException, tracked: TrackedRun, status: str) -> None:
    """End the run with `status` and the error as its `error` tag. A store that cannot be
    written (a full disk, a gone server) leaves the run RUNNING: the next command marks it
    KILLED (stores.Heartbeat)."""
    with signals_ignored(signal.SIGINT, signal.SIGTERM):
        release_cut_statements(err)
        if stores.unreachable(err):  # a gone server: each write would wait out its retries
            return
        with contextlib.suppress(Exception):
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else type(err).__name__
            tracked.set_tag(tag.ERROR, f"{reason}: {err}"[:5000])
        with contextlib.suppress(Exception):
            tracked.end(status)


# ---- evaluation: step 0, every train.eval_every steps, the end -------------------------------


class RunEvaluation:
    """The harness's evaluations of one run while it trains (the yardstick, `Evaluator`)."""

    def __init__(self, run: RunContext, listeners: list[EvalListener]):
        exp, data = run.exp, run.data
        self.exp, self.listeners, self.log = exp, listeners, run.log
        self.tracked = run.tracked
        self.evaluator = Evaluator(run.resolved, data, run.tokenizer, run.reference)
        self.metrics: dict[str, float] = {}
        self.loss: float | None = None  # the latest training loss, shown with each evaluation
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
        return self._record(metrics, table, step)

    def evaluate_best_of_n(self, policy: BestOfN) -> bool:
        """Best-of-n's one evaluation, at step 0 (nothing trains); the table's reference
        column is the reference's own samples, as at every method's step 0."""
        self.first_table = self.evaluator.reference_table()
        return self._record(*self.evaluator.evaluate_best_of_n(policy), step=0)

    def _record(self, metrics: dict[str, float], table: dict[str, list], step: int) -> bool:
        self.tracked.log_metrics(metrics, step=step)
        self.metrics, self.last_table, self.last_step = metrics, table, step
        self.first_table = self.first_table or table
        loss = "" if self.loss is None else f"loss {self.loss:.3f}  "
        self.log(
            f"[{self.exp.name}] step {step:>4}/{self.exp.train.steps}  {loss}{summarize(metrics)}"
        )
        return any([listener(step, metrics) for listener in self.listeners])

    def note_loss(self, loss: float) -> None:
        self.loss = loss

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


# ---- training --------------------------------------------------------------------------------


def train_policy(run: RunContext, evaluate, on_loss=lambda loss: None):
    """The method's TRL trainer on the run's policy: (the trained model, a PeftModel with LoRA;
    the step training ended at). Training metrics go to the MLflow run `run.run_id` (None:
    nowhere); `evaluate(policy, step)` is the harness's evaluation every train.eval_every steps."""
    exp, method, lora = run.exp, run.resolved.method, run.exp.model.lora
    with tempfile.TemporaryDirectory(prefix="harness-trainer-") as output_dir:
        job = TrainingJob(
            policy=run.policy,
            # LoRA: TRL's reference is the base with the adapter off (no second copy).
            reference=run.reference if method.uses_reference and lora is None else None,
            tokenizer=run.tokenizer,
            data=run.data,
            beta=exp.beta,
            method_args=resolved_args(exp),
            max_length=exp.train.max_length,
            seed=exp.train.seed,
            model_source=exp.model.name_or_path,
            tracked=run.tracked,
            # TRL's precompute keeps its result in a per-process temporary file that the other
            # processes cannot open (measured: FileNotFoundError on rank 1): several processes
            # compute the reference per step instead.
            reference_cache=exp.train.reference_cache and not distributed.launched(),
            args=trainer_arguments(exp, output_dir),
            peft_config=lora_config(lora) if lora is not None else None,
            callbacks=[
                MetricsCallback(exp.method, run.tracked),
                DivergenceGuard(exp.train.lr),
                EvalCallback(evaluate, exp.train.eval_every, on_loss=on_loss),
            ],
        )
        trainer = method.build(job)
        trainer.remove_callback(PrinterCallback)  # the harness prints its own progress lines
        trainer.train()
    return trainer.model, trainer.state.global_step


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
        logging_first_step=True,  # the loss at the starting weights: DivergenceGuard's yardstick
        remove_unused_columns=False,  # ORPO and CPO need their extra columns
        logging_nan_inf_filter=False,  # log a NaN loss as NaN (DivergenceGuard stops there)
        **precision_arguments(resolve_dtype(exp.model.dtype), exp.model.gradient_checkpointing),
    )


# ---- saving the policy -----------------------------------------------------------------------


def save_policy(run: RunContext, best_of_n: BestOfN | None = None) -> None:
    """The trained policy, saved whole or not at all, before anything can fail after training.

    A full fine-tune is logged as an MLflow model (transformers flavour): listed under the
    experiment's Models, registrable, loadable with `mlflow.transformers.load_model`; the
    run's tag points at it only once it is complete. A LoRA policy is its adapter alone
    (PEFT's adapter_config.json + weights) in the run's `policy/` artifact, loaded on its base.
    Best-of-n's is the base model it samples from, its n a param of the logged model.
    """
    policy, tokenizer = run.policy, run.tokenizer
    try:
        with library_output():  # transformers' save bars, MLflow's model-card and license notices
            if is_peft(policy):
                with tempfile.TemporaryDirectory(prefix="harness-policy-") as folder:
                    policy.save_pretrained(folder)
                    tokenizer.save_pretrained(folder)
                    run.tracked.log_artifacts(folder, artifact_path=stores.POLICY_ARTIFACT)
                return
            info = mlflow.transformers.log_model(
                {"model": policy, "tokenizer": tokenizer},
                name=stores.POLICY_ARTIFACT,
                task="text-generation",
                pip_requirements=stores.model_requirements(),
                params={tag.BEST_OF_N: best_of_n.n} if best_of_n else None,
                run_id=run.run_id,  # Model.log's own argument: no active run needed
            )
    except BaseException as err:  # a full disk (its own error types) or a signal mid-save
        release_cut_statements(err)
        stores.discard_unsaved_policy(run.client, run.run_id)  # whole or absent
        if not isinstance(err, Exception):
            raise
        raise PolicyNotSaved(f"the policy could not be saved ({err})") from err
    run.tracked.set_tag(stores.POLICY_MODEL_TAG, info.model_uri)


# ---- the other processes ---------------------------------------------------------------------


def train_only(resolved: ResolvedExperiment, started: float) -> RunResult:
    """A process other than the main one: the same data, models and training, nothing else.

    Its collective calls mirror the main process's: the step-0 decision, the trainer's own,
    one decision per evaluation (EvalCallback), and the final barrier.
    """
    run = load_models(resolved, load_preference_data(resolved.experiment))
    if resolved.method.trains and not distributed.main_decides(None):
        train_policy(run, lambda model, step: None)
    distributed.wait_for_everyone()
    return RunResult(None, resolved.experiment, {}, time.perf_counter() - started)
