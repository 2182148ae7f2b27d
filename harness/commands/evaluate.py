"""`harness eval`: score a finished run's saved policy and log the scores into that run."""

from __future__ import annotations

from harness.commands.common import add_tracking_args, quiet_libraries
from harness.config.spec import JUDGES, ScoringRequest, SpecError
from harness.infra.databases import mask
from harness.infra.locations import mlflow_ui_hint, resolve_tracking_uri


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="score a finished run's policy (win rates, lm-eval) into that run"
    )
    p.add_argument(
        "--run-id",
        required=True,
        help="the MLflow run whose trained policy to score "
        "(its MLflow model, or the policy/ files of older runs)",
    )
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
        choices=(*JUDGES, "both", "none"),
        default="both",
        help="who judges the win rates (gold where the world has one); none = no win rates",
    )
    add_tracking_args(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    # Arguments first: a bad one fails before anything is loaded or logged.
    temperatures = parse_temperatures(args.temperatures) if args.temperatures else None
    judges = {"both": JUDGES, "none": ()}.get(args.judge, (args.judge,))
    tasks = None
    if args.tasks is not None:
        tasks = (
            ()
            if args.tasks.strip().lower() == "none"
            else tuple(t.strip() for t in args.tasks.split(",") if t.strip())
        )
    quiet_libraries()
    from harness.run.rescore import score_run  # deferred: torch and TRL take seconds

    uri = resolve_tracking_uri(args.tracking_uri)
    request = ScoringRequest(
        temperatures=temperatures, judges=judges, tasks=tasks, include_path=args.include_path
    )
    score_run(args.run_id, request, tracking_uri=uri)
    experiment_id = run_experiment_id(uri, args.run_id)
    print(
        f"\nScores logged into run {args.run_id} at {mask(uri)} (winrate/, bench/ metrics; "
        f"winrate/completions.json). Open it in the MLflow UI:\n  {mlflow_ui_hint(uri, experiment_id)}"
    )
    return 0


def run_experiment_id(uri: str, run_id: str) -> str:
    from mlflow.tracking import MlflowClient  # deferred: mlflow takes seconds to import

    return MlflowClient(uri).get_run(run_id).info.experiment_id


def parse_temperatures(text: str) -> tuple[float, ...]:
    """'0,0.5,1' -> (0.0, 0.5, 1.0); a temperature below 0 or a non-number is an error."""
    try:
        temps = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise SpecError(f"--temperatures expects numbers like 0,0.5,1, got {text!r}") from None
    if not temps or any(t < 0 for t in temps):
        raise SpecError(f"--temperatures must all be >= 0 (0 = greedy), got {text!r}")
    return temps
