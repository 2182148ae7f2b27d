"""One experiment -> one trained policy and one MLflow run.

Stages: load and check the data, load policy and reference, open the run (params, tags,
experiment JSON), evaluate the starting point (step 0), train with the method's TRL trainer
while the harness evaluates every `train.eval_every` steps, evaluate the end point, save the
policy (whole or not at all), the sample table, and score. Whatever happens the run ends:
FAILED on an error, KILLED on Ctrl-C, and if the process is killed outright the next harness
command marks it KILLED from its heartbeat (harness.infra.stores).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import torch
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
from harness.evaluate import Evaluator
from harness.evaluate.scoring import prepare_scoring
from harness.infra import distributed, stores
from harness.infra.cache import content_digest, warm
from harness.infra.console import library_output
from harness.infra.devices import default_device, precision_arguments, training_arguments
from harness.methods.callbacks import (
    DivergenceGuard,
    EvalCallback,
    MetricsCallback,
    TrainingDiverged,
)
from harness.methods.catalog import METHODS, flat_params, resolved_args, run_name
from harness.methods.checks import (
    check_estimable,
    check_experiment,
    check_method_accepts,
    with_defaults,
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


def reference_key(exp: Experiment, data: PreferenceData) -> tuple:
    """What determines the reference model: its source, remote code, dtype and device (the warm
    cache's key for it and for everything computed from it)."""
    source, remote = model_source(exp, data), exp.model.trust_remote_code
    return ("reference", source, remote, str(weights_dtype(exp.model)), str(default_device()))


def load_models(exp: Experiment, data: PreferenceData):
    """(tokenizer, policy, reference): the policy starts as the reference.

    Full fine-tune: the reference is a second, frozen copy. LoRA: it is the policy's own base
    model with the adapter switched off (`AdapterDisabled`), so the weights are held once.
    Both start from a pristine model kept on the CPU, which a sweep worker keeps in memory
    across trials (`warm`). A model that went through a trainer is never copied again: the
    trainer's wrappers (accelerate replaces `forward`) would still call the original's weights.
    """
    key = reference_key(exp, data)
    _, source, remote, _, device = key
    dtype = weights_dtype(exp.model)

    def load():
        tokenizer = load_tokenizer(source, trust_remote_code=remote)
        model = load_causal_lm(source, dtype=dtype, trust_remote_code=remote)
        return tokenizer, model.eval().requires_grad_(False)

    tokenizer, pristine = warm.get(key, load)
    policy = copy.deepcopy(pristine).to(device).requires_grad_(True)
    if exp.model.lora is not None:
        check_lora_targets(policy, exp.model.lora)
        return copy.deepcopy(tokenizer), policy, AdapterDisabled(policy)
    reference = copy.deepcopy(pristine).to(device)
    return copy.deepcopy(tokenizer), policy, reference


class ExperimentRun:
    """The state of one experiment's run while it trains."""

    def __init__(self, exp: Experiment, evaluator: Evaluator, listeners: list[EvalListener], log):
        self.exp, self.evaluator, self.listeners, self.log = exp, evaluator, listeners, log
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
        mlflow.log_metrics(metrics, step=step)
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


def run_experiment(
    exp: Experiment,
    *,
    listeners: list[EvalListener] = (),
    tags: dict | None = None,
    parent_run_id: str | None = None,
    on_run_created=None,
    log=print,
) -> RunResult:
    """Train and evaluate `exp` in a new MLflow run of the current tracking experiment.

    With `parent_run_id` the run is nested under that run (sweeps), without it being active.
    `on_run_created(run_id)` is called as soon as the run exists (before training): a caller
    learns which run is this experiment's even when it fails, and knows none exists if it
    failed before.
    Under several processes (accelerate, torchrun) every process trains; only the main one
    talks to MLflow, evaluates, scores and saves, while the others wait (`train_only`).
    """
    started = time.perf_counter()
    check_experiment(exp)
    exp = with_defaults(exp)
    if exp.name != run_name(exp):  # sft-b0.1 -> sft: beta does not enter its training
        exp = exp.replace({"name": run_name(exp)})
    method = METHODS.get(exp.method)
    set_seed(exp.train.seed)
    if not distributed.is_main():
        return train_only(exp, method, started)
    log(f"[{exp.name}] data: loading {exp.dataset}")
    data = load_preference_data(exp)
    check_method_accepts(method, data)
    check_estimable(exp, data)
    tokenizer, policy, reference = load_models(exp, data)
    context = context_length(policy)
    if context is not None and exp.train.max_length > context:
        raise SpecError(
            f"train.max_length must be at most the model's context ({context} positions), "
            f"got {exp.train.max_length}"
        )
    scoring = prepare_scoring(exp, data, log=log)  # checked (and the judge trained) up front
    filtered = ", ".join(f"{n} {why}" for why, n in data.filtered.items()) or "nothing"
    log(
        f"[{exp.name}] data: {len(data.train)} train rows, {len(data.eval_pairs)} held-out pairs; filtered {filtered}"
    )

    run_tags = {
        tag.METHOD: exp.method,
        tag.DATASET: exp.dataset,
        tag.EXPERIMENT: exp.name,
        **provenance(exp, data),
        **(tags or {}),
    }
    if parent_run_id:
        run_tags[tag.PARENT_RUN] = parent_run_id
    with mlflow.start_run(run_name=exp.name, tags=run_tags) as active:
        run_id = active.info.run_id
        if on_run_created is not None:
            on_run_created(run_id)
        try:
            with stores.Heartbeat(run_id):
                run = train_and_score(
                    exp, method, data, tokenizer, policy, reference, scoring, listeners, run_id, log
                )
        except KeyboardInterrupt as err:
            end_run_after(err, run_id, "KILLED")
            raise RunInterrupted(f"run {run_id} ({exp.name}) marked KILLED") from None
        except BaseException as err:
            end_run_after(err, run_id, "FAILED")
            if isinstance(err, RunFailed):
                err.args = (f"run {run_id} ({exp.name}) FAILED: {err}",)
            raise
    # The others wait here for the scoring and saving. Not after an error: the main process
    # then exits, and the launcher stops the others wherever they wait.
    distributed.wait_for_everyone()
    seconds = time.perf_counter() - started
    return RunResult(run_id, exp, run.metrics, seconds, method.uses_beta)


def train_and_score(
    exp, method, data, tokenizer, policy, reference, scoring, listeners, run_id, log
) -> ExperimentRun:
    """Inside the open run: log what the run is, train, save the policy, then score it.

    The policy is saved right after training, before the sample table and scoring, so a
    failure there leaves a FAILED run whose policy `harness eval` can still score.
    """
    mlflow.log_params({k: stores.param_value(v) for k, v in flat_params(exp).items()})
    mlflow.log_params(scale_params(exp))
    mlflow.log_text(exp.to_json(), "experiment.json")
    log_datasets(exp, data)
    for artifact, text in (data.world.run_artifacts() if data.world else {}).items():
        mlflow.log_text(text, artifact)
    evaluator = Evaluator(exp, data, tokenizer, reference, reference_key(exp, data))
    data_counts = {DATA_TRAIN_ROWS: len(data.train), DATA_EVAL_PAIRS: len(data.eval_pairs)}
    if data.new_pairs:
        data_counts[DATA_EVAL_NEW_PAIRS] = len(data.new_pairs)
    data_counts |= {data_filtered(why): n for why, n in data.filtered.items()}
    mlflow.log_metrics(data_counts | evaluator.counts, step=0)
    if any(evaluator.counts.values()):
        cut = ", ".join(f"{n} {name.split('/', 1)[1]}" for name, n in evaluator.counts.items() if n)
        log(f"[{exp.name}] data: held-out rows cut to fit ({cut})")

    run = ExperimentRun(exp, evaluator, list(listeners), log)
    final_step = 0
    stopped_early = run.evaluate(policy, 0, untrained=True)
    if not distributed.main_decides(stopped_early):  # a listener may stop it
        policy, final_step = train_policy(
            exp, method, data, tokenizer, policy, reference, run.evaluate, run_id, run.note_loss
        )
    if run.last_step != final_step:  # not right after a listener stopped training
        run.evaluate(policy, final_step)
    mlflow.set_tag(tag.FINAL_STEP, str(run.last_step))
    if exp.train.save_policy:
        save_policy(policy, tokenizer)
    mlflow.log_table(run.sample_table(), artifact_file="samples.json")
    if scoring.wanted:
        log(f"[{exp.name}] scoring: {scoring.describe()}")
        scoring.score(run_id, policy, reference, tokenizer, step=run.last_step)
    mlflow.flush_async_logging()
    return run


def provenance(exp: Experiment, data: PreferenceData) -> dict[str, str]:
    """What produced the run: the commit, the pinned libraries' versions, the data's
    fingerprint, the world's version, the device and the seed (tags, logged on every run)."""
    found = {
        tag.GIT_SHA: stores.git_sha(),
        tag.DATA_FINGERPRINT: content_digest([data.train, data.eval_pairs]),
        tag.WORLD_VERSION: str(getattr(getattr(data.world, "settings", None), "version", "none")),
        tag.DEVICE: default_device(),
        tag.SEED: str(exp.train.seed),
    }
    for name in tag.VERSIONED:
        try:
            found[tag.version_tag(name)] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[tag.version_tag(name)] = "not installed"
    return found


def end_run_after(err: BaseException, run_id: str, status: str) -> None:
    """End the active run with `status` and the error as its `error` tag, before MLflow's
    context manager would call it FAILED (or atexit FINISHED). A store that cannot be written
    (a full disk) leaves the run RUNNING: the next command marks it KILLED (stores.Heartbeat)."""
    with signals_ignored(signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            mlflow.flush_async_logging()
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else type(err).__name__
            mlflow.set_tag(tag.ERROR, f"{reason}: {err}"[:5000])
        with contextlib.suppress(Exception):
            mlflow.end_run(status)


@contextlib.contextmanager
def signals_ignored(*signums: int):
    """Ignore `signums` for the block. The run is already stopping: a second signal (SLURM sends
    SIGTERM right after it requeues a job on SIGUSR2; a second Ctrl-C) would cut its ending
    short, and MLflow would then mark it FAILED. Signal handlers live in the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def train_only(exp: Experiment, method, started: float) -> RunResult:
    """A process other than the main one: the same data, models and training, nothing else.

    Its collective calls mirror the main process's: the step-0 decision, the trainer's own,
    one decision per evaluation (EvalCallback), and the final barrier.
    """
    data = load_preference_data(exp)
    tokenizer, policy, reference = load_models(exp, data)
    if not distributed.main_decides(None):
        train_policy(
            exp, method, data, tokenizer, policy, reference, lambda model, step: None, None
        )
    distributed.wait_for_everyone()
    return RunResult(None, exp, {}, time.perf_counter() - started)


def scale_params(exp: Experiment) -> dict[str, str]:
    """How the run was spread: processes, and pairs per optimizer step across all of them."""
    processes = distributed.num_processes()
    t = exp.train
    return {
        "processes": str(processes),
        "effective_batch": str(t.batch_size * t.grad_accum * processes),
    }


def train_policy(
    exp, method, data, tokenizer, policy, reference, evaluate, run_id, on_loss=lambda loss: None
):
    """The method's TRL trainer on `policy`: (the trained model, a PeftModel with LoRA; the
    step training ended at). Training metrics go to the MLflow run `run_id` (None: nowhere)."""
    lora = exp.model.lora
    with tempfile.TemporaryDirectory(prefix="harness-trainer-") as output_dir:
        job = TrainingJob(
            policy=policy,
            # LoRA: TRL's reference is the base with the adapter off (no second copy).
            reference=reference if method.uses_reference and lora is None else None,
            tokenizer=tokenizer,
            data=data,
            beta=exp.beta,
            method_args=resolved_args(exp),
            max_length=exp.train.max_length,
            seed=exp.train.seed,
            model_source=exp.model.name_or_path,
            # TRL's precompute keeps its result in a per-process temporary file that the other
            # processes cannot open (measured: FileNotFoundError on rank 1): several processes
            # compute the reference per step instead.
            reference_cache=exp.train.reference_cache and not distributed.launched(),
            args=trainer_arguments(exp, output_dir),
            peft_config=lora_config(lora) if lora is not None else None,
            callbacks=[
                MetricsCallback(exp.method, run_id),
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
        remove_unused_columns=False,  # ORPO and CPO need their extra columns
        logging_nan_inf_filter=False,  # log a NaN loss as NaN (DivergenceGuard stops there)
        **precision_arguments(resolve_dtype(exp.model.dtype), exp.model.gradient_checkpointing),
    )


def log_datasets(exp: Experiment, data: PreferenceData) -> None:
    """The training rows and held-out pairs as the run's MLflow dataset inputs."""
    if data.world is not None:
        source, hub = str(data.world.reference_path.parent.resolve()), False
    else:
        local = Path(exp.dataset)
        source, hub = (str(local.resolve()), False) if local.exists() else (exp.dataset, True)
    splits = {"train": data.train, "eval": data.eval_pairs}
    stores.log_dataset_inputs(exp.dataset, source, splits, hub=hub)


def save_policy(policy, tokenizer) -> None:
    """The trained policy, saved whole or not at all, before anything can fail after training.

    A full fine-tune is logged as an MLflow model (transformers flavour): listed under the
    experiment's Models, registrable, loadable with `mlflow.transformers.load_model`; the
    run's tag points at it only once it is complete. A LoRA policy is its adapter alone
    (PEFT's adapter_config.json + weights) in the run's `policy/` artifact, loaded on its base.
    """
    try:
        with library_output():  # transformers' save bars, MLflow's model-card and license notices
            if is_peft(policy):
                with tempfile.TemporaryDirectory(prefix="harness-policy-") as folder:
                    policy.save_pretrained(folder)
                    tokenizer.save_pretrained(folder)
                    mlflow.log_artifacts(folder, artifact_path=stores.POLICY_ARTIFACT)
                return
            info = mlflow.transformers.log_model(
                {"model": policy, "tokenizer": tokenizer},
                name=stores.POLICY_ARTIFACT,
                task="text-generation",
                pip_requirements=stores.model_requirements(),
            )
    except Exception as err:  # safetensors and MLflow report a full disk as their own errors
        remove_partial_policy(mlflow.active_run().info.run_id)
        raise PolicyNotSaved(f"the policy could not be saved ({err})") from err
    mlflow.set_tag(stores.POLICY_MODEL_TAG, info.model_uri)


def remove_partial_policy(run_id: str) -> None:
    """What a failed save left in the run's local artifacts: a policy is whole or absent."""
    folder = stores.local_artifact_dir(run_id)
    if folder is not None:
        shutil.rmtree(folder / stores.POLICY_ARTIFACT, ignore_errors=True)
