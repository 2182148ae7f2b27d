"""Score a finished run's saved policy later (`harness eval`), logging into that same run.

The run is never reopened: its status and end time stay what its training left (a FAILED run
whose policy was saved before scoring failed can be scored, and stays FAILED).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from safetensors import SafetensorError

from harness.config import tags
from harness.config.errors import UserError, disk_error
from harness.config.metrics import EVAL_KL
from harness.config.spec import AS_CONFIGURED, Experiment, ScoringRequest
from harness.data.lora import AdapterDisabled, is_adapter
from harness.data.models import load_causal_lm, load_policy, load_tokenizer, weights_dtype
from harness.data.preference import load_preference_data
from harness.evaluate.scoring import prepare_scoring
from harness.evaluate.winrate import Contestants
from harness.infra.console import library_output
from harness.infra.databases import mask
from harness.infra.devices import default_device
from harness.infra.stores import POLICY_ARTIFACT, POLICY_MODEL_TAG, open_store, policy_artifact_path
from harness.methods.checks import resolve

FINAL_STEP_TAG = tags.FINAL_STEP


class RunError(UserError, ValueError):
    """A run that cannot be scored (unknown, or without a saved policy)."""


def score_run(
    run_id: str,
    request: ScoringRequest = AS_CONFIGURED,
    *,
    tracking_uri: str | None = None,
    log=print,
) -> dict[str, float]:
    """Load the run's experiment and policy, check the settings, score, log into the run (at
    `tracking_uri`; None: MLflow's default). Win rates are always asked for (`request.judges`
    () for none); `request.tasks` None: the experiment's eval.tasks, else the world's."""
    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    client = open_store(tracking_uri, log=log)
    run, resolved = scorable_run(client, run_id, tracking_uri)
    exp = resolved.experiment
    tasks = request.tasks if request.tasks is not None else exp.eval.tasks or ("world",)
    request = dataclasses.replace(request, winrate=True, tasks=tasks)
    scoring = prepare_scoring(resolved, load_preference_data(exp), request, log=log)
    contestants = load_contestants(client, run, exp, scoring.reference_source)
    step = final_step(client, run)
    log(f"[{exp.name}] scoring run {run_id} at step {step}: {scoring.describe()}")
    return scoring.score(client, run_id, contestants, step=step)


def scorable_run(client: MlflowClient, run_id: str, tracking_uri: str):
    """(run, its resolved experiment) of a run with a saved policy and its experiment.json."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RunError(f"no MLflow run {run_id!r} at {mask(tracking_uri)}") from None
    names = {a.path for a in client.list_artifacts(run_id)}
    if POLICY_MODEL_TAG not in run.data.tags and POLICY_ARTIFACT not in names:
        raise RunError(
            f"run {run_id} ({run.info.run_name}) has no saved policy: it was trained with "
            "train.save_policy=False or did not finish"
        )
    if "experiment.json" not in names:
        raise RunError(f"run {run_id} has no experiment.json: it was not made by `harness run`")
    saved = Path(client.download_artifacts(run_id, "experiment.json")).read_text()
    return run, resolve(Experiment.from_dict(json.loads(saved)))


def load_contestants(client: MlflowClient, run, exp: Experiment, base: str) -> Contestants:
    """The run's policy on the device, and its reference: the base model `base`, or for a
    LoRA run the policy with its adapter off."""
    remote, dtype = exp.model.trust_remote_code, weights_dtype(exp.model)
    policy, tokenizer, adapter = load_run_policy(
        client, run, base, dtype=dtype, trust_remote_code=remote
    )
    policy = policy.to(default_device())
    if adapter:
        reference = AdapterDisabled(policy)
    else:
        reference = load_causal_lm(base, dtype=dtype, trust_remote_code=remote)
        reference = reference.to(default_device()).eval()
    return Contestants(policy, reference, tokenizer)


def load_run_policy(client: MlflowClient, run, base: str, *, dtype, trust_remote_code: bool):
    """(policy, tokenizer, whether it is a LoRA adapter on `base`) of a run: its MLflow model,
    or its plain `policy/` files (a LoRA adapter, or runs logged before the MLflow model)."""
    uri = run.data.tags.get(POLICY_MODEL_TAG)
    try:
        if uri is not None:
            with library_output():  # MLflow's download bars and loading notices
                # The model's files found through `client`'s store: a models:/ URI is resolved
                # through MLflow's process-wide tracking URI, even given download_artifacts'
                # tracking_uri (measured, mlflow 3.17).
                model = client.get_logged_model(uri.removeprefix("models:/"))
                local = mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location)
                parts = mlflow.transformers.load_model(local, return_type="components")
            return parts["model"], parts["tokenizer"], False
        folder = policy_artifact_path(client, run.info.run_id)
        policy = load_policy(folder, base, dtype=dtype, trust_remote_code=trust_remote_code)
        tokenizer = load_tokenizer(folder, trust_remote_code=trust_remote_code)
    except (OSError, SafetensorError, MlflowException) as err:  # the saved files, not a bug
        if disk_error(err):
            raise
        where = uri or f"runs:/{run.info.run_id}/{POLICY_ARTIFACT}"
        raise RunError(
            f"run {run.info.run_id} ({run.info.run_name}): its saved policy {where} cannot be "
            f"loaded ({type(err).__name__}: {str(err).splitlines()[0][:200]}): its files are "
            "damaged or incomplete; train the run again"
        ) from None
    return policy, tokenizer, is_adapter(folder)


def final_step(client: MlflowClient, run) -> int:
    """The step of the run's last evaluation, where its scores belong."""
    if FINAL_STEP_TAG in run.data.tags:
        return int(run.data.tags[FINAL_STEP_TAG])
    # Runs logged before the tag existed: the last step of the yardstick's KL history.
    return max((m.step for m in client.get_metric_history(run.info.run_id, EVAL_KL)), default=0)
