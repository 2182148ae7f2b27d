"""`harness eval`: score a finished run's saved policy and log the scores into that run."""

from __future__ import annotations

import json


class RunError(ValueError):
    """A run that cannot be scored (unknown, or without a saved policy)."""


def register(subparsers) -> None:
    from harness.cli import add_tracking_args

    p = subparsers.add_parser(
        "eval", help="score a finished run's policy (win rates, lm-eval) into that run"
    )
    p.add_argument("--run-id", required=True, help="the MLflow run whose `policy/` to score")
    p.add_argument(
        "--tasks",
        help="lm-eval tasks, comma-separated; 'world' = the world's "
        "bundled tasks, 'none' = skip (default: the experiment's eval.tasks, else world)",
    )
    p.add_argument("--include-path", help="a folder of lm-eval task YAMLs to search first")
    p.add_argument(
        "--temperatures",
        help="sampling temperatures, e.g. 0,0.5,1 (0 = greedy; "
        "default: the experiment's eval.temperatures)",
    )
    p.add_argument(
        "--judge",
        choices=("rm", "gold", "both"),
        default="both",
        help="who judges the win rates (gold where the world has one)",
    )
    add_tracking_args(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from harness import tracking
    from harness.evaluate.scoring import parse_temperatures

    # Arguments first: a bad one fails before anything is loaded or logged.
    temperatures = parse_temperatures(args.temperatures) if args.temperatures else None
    judges = ("rm", "gold") if args.judge == "both" else (args.judge,)
    tasks = None
    if args.tasks is not None:
        tasks = (
            ()
            if args.tasks.strip().lower() == "none"
            else tuple(t.strip() for t in args.tasks.split(",") if t.strip())
        )
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    from harness.cli import quiet_libraries

    quiet_libraries()
    score_run(
        args.run_id,
        tracking_uri=uri,
        temperatures=temperatures,
        judges=judges,
        tasks=tasks,
        include_path=args.include_path,
    )
    return 0


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
    import mlflow
    import torch
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from harness.data import load_preference_data
    from harness.evaluate.scoring import prepare_scoring
    from harness.models import load_causal_lm, load_tokenizer
    from harness.spec import Experiment
    from harness.train import policy_artifact_path

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RunError(f"no MLflow run {run_id!r} at {mlflow.get_tracking_uri()}") from None
    names = {a.path for a in client.list_artifacts(run_id)}
    if "policy" not in names:
        raise RunError(
            f"run {run_id} ({run.info.run_name}) has no saved policy: it was trained with "
            "train.save_policy=False or did not finish"
        )
    if "experiment.json" not in names:
        raise RunError(f"run {run_id} has no experiment.json: it was not made by `harness run`")
    exp = Experiment.from_dict(
        json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/experiment.json"))
    )
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
    policy = load_causal_lm(folder, trust_remote_code=exp.model.trust_remote_code)
    tokenizer = load_tokenizer(folder, trust_remote_code=exp.model.trust_remote_code)
    reference = load_causal_lm(
        scoring.reference_source, trust_remote_code=exp.model.trust_remote_code
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy, reference = policy.to(device), reference.to(device).eval()
    step = max((m.step for m in client.get_metric_history(run_id, "eval/kl")), default=0)
    log(f"[{exp.name}] scoring run {run_id} at step {step}: {scoring.describe()}")
    with mlflow.start_run(run_id=run_id):
        return scoring.score(policy, reference, tokenizer, step=step)
