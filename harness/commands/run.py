"""`harness run`: train and evaluate experiments, one MLflow run each."""

from __future__ import annotations

from harness.commands.common import (
    add_override_args,
    add_tracking_args,
    apply_overrides,
    quiet_libraries,
)
from harness.loader import load_objects
from harness.metrics import EVAL_GOLD_REWARD, EVAL_KL, EVAL_PAIR_ACCURACY
from harness.spec import Experiment
from harness.stores import mask, mlflow_ui_hint, resolve_tracking_uri, use_tracking


def register(subparsers) -> None:
    run = subparsers.add_parser("run", help="train and evaluate experiments, one MLflow run each")
    run.add_argument("target", help="experiments/FILE.py or module:OBJECT")
    add_override_args(run)
    add_tracking_args(run)
    run.add_argument(
        "--mlflow-experiment", help="MLflow experiment name (default: the file's stem)"
    )
    run.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    experiments, stem = load_objects(args.target, Experiment)
    experiments = apply_overrides(experiments, args.overrides)
    # Deferred: the registries and trainers import torch and TRL (seconds); a bad target or
    # `--set` above fails before that.
    from harness.checks import check_experiment
    from harness.train import run_experiment

    for exp in experiments:  # every experiment is checked before the first one trains
        check_experiment(exp)
    quiet_libraries()
    uri = resolve_tracking_uri(args.tracking_uri)
    name = args.mlflow_experiment or stem
    use_tracking(uri, name)
    print(
        f"running {len(experiments)} experiment(s) into MLflow experiment {name!r} at {mask(uri)}"
    )
    results = [run_experiment(exp) for exp in experiments]
    print()
    print(summary_table(results))
    print(
        f"\n{len(results)} run(s) logged to MLflow experiment {name!r}. Compare them with:\n"
        f"  {mlflow_ui_hint(uri)}"
    )
    return 0


def summary_table(results) -> str:
    header = (
        f"{'experiment':<24} {'method':<7} {'beta':>6} {'gold':>7} {'KL':>7} "
        f"{'pair acc':>8} {'time':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        m = r.metrics
        gold = f"{m[EVAL_GOLD_REWARD]:+.3f}" if EVAL_GOLD_REWARD in m else "-"
        acc = f"{m[EVAL_PAIR_ACCURACY]:.2f}" if EVAL_PAIR_ACCURACY in m else "-"
        lines.append(
            f"{r.experiment.name:<24} {r.experiment.method:<7} {r.experiment.beta:>6g} "
            f"{gold:>7} {m[EVAL_KL]:>7.3f} {acc:>8} {r.seconds:>6.1f}s"
        )
    return "\n".join(lines)
