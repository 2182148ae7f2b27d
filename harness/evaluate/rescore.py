"""Score a finished run's saved policy later (`harness eval`), logging into that same run."""

from __future__ import annotations

import json

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from harness.checks import check_experiment
from harness.data import load_preference_data
from harness.devices import default_device
from harness.evaluate.scoring import prepare_scoring
from harness.lora import AdapterDisabled, is_adapter
from harness.metrics import EVAL_KL
from harness.models import load_causal_lm, load_policy, load_tokenizer, weights_dtype
from harness.spec import Experiment
from harness.stores import POLICY_ARTIFACT, policy_artifact_path

FINAL_STEP_TAG = "final_step"  # set by `harness run`: the step of the run's last evaluation


class RunError(ValueError):
    """A run that cannot be scored (unknown, or without a saved policy)."""


def score_run(
    run_id: str,
    *,
    tracking_uri: str | None = None,
    temperatures=None,
    judges=None,
    tasks=None,
    include_path=None,
    log=print,
) -> dict[str, float]:
    """Load the run's experiment and policy, check the settings, score, log into the run."""
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RunError(f"no MLflow run {run_id!r} at {mlflow.get_tracking_uri()}") from None
    names = {a.path for a in client.list_artifacts(run_id)}
    if POLICY_ARTIFACT not in names:
        raise RunError(
            f"run {run_id} ({run.info.run_name}) has no saved policy: it was trained with "
            "train.save_policy=False or did not finish"
        )
    if "experiment.json" not in names:
        raise RunError(f"run {run_id} has no experiment.json: it was not made by `harness run`")
    exp = Experiment.from_dict(
        json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/experiment.json"))
    )
    check_experiment(exp)
    if tasks is None:
        tasks = exp.eval.tasks or ("world",)
    data = load_preference_data(exp)
    scoring = prepare_scoring(
        exp,
        data,
        winrate_on=True,
        temperatures=temperatures,
        judges=judges,
        tasks=tasks,
        include_path=include_path,
        log=log,
    )
    folder = policy_artifact_path(run_id)
    remote, dtype, base = (
        exp.model.trust_remote_code,
        weights_dtype(exp.model),
        scoring.reference_source,
    )
    # A LoRA run saved its adapter: base + adapter, and the base with the adapter off as reference.
    policy = load_policy(folder, base, dtype=dtype, trust_remote_code=remote).to(default_device())
    tokenizer = load_tokenizer(folder, trust_remote_code=remote)
    if is_adapter(folder):
        reference = AdapterDisabled(policy)
    else:
        reference = load_causal_lm(base, dtype=dtype, trust_remote_code=remote)
        reference = reference.to(default_device()).eval()
    step = final_step(client, run)
    log(f"[{exp.name}] scoring run {run_id} at step {step}: {scoring.describe()}")
    with mlflow.start_run(run_id=run_id):
        return scoring.score(policy, reference, tokenizer, step=step)


def final_step(client: MlflowClient, run) -> int:
    """The step of the run's last evaluation, where its scores belong."""
    if FINAL_STEP_TAG in run.data.tags:
        return int(run.data.tags[FINAL_STEP_TAG])
    # Runs logged before the tag existed: the last step of the yardstick's KL history.
    return max((m.step for m in client.get_metric_history(run.info.run_id, EVAL_KL)), default=0)
