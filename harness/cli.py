"""`harness` command line: run experiments (and, from their modules, the other commands)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from harness.spec import Experiment, parse_override

# Modules that add a subcommand: each has `register(subparsers)` setting `func` on its parser.
COMMAND_MODULES: list[str] = [
    "harness.sweep.cli",
    "analysis.cli",
    "harness.evaluate.command",
    "harness.methods",
]


def quiet_libraries() -> None:
    """The harness prints a line per stage; silence the libraries' per-call progress bars."""
    import datasets
    import optuna
    import transformers

    os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's own bars (reference log-probs) read it
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def add_tracking_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db)",
    )


def add_override_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an experiment field by dotted name, e.g. train.steps=200",
    )


def apply_overrides(experiments: list[Experiment], overrides: list[str]) -> list[Experiment]:
    changes = dict(parse_override(o) for o in overrides)
    return [exp.replace(changes) for exp in experiments] if changes else experiments


def mlflow_ui_hint(uri: str) -> str:
    """The command that opens the MLflow UI on `uri`, using this environment's mlflow."""
    beside = Path(sys.executable).parent / "mlflow"
    mlflow_bin = str(beside) if beside.exists() else "mlflow"
    if mlflow_bin.startswith(os.getcwd()):
        mlflow_bin = os.path.relpath(mlflow_bin)
    return f"{mlflow_bin} ui --backend-store-uri {uri}"


def cmd_run(args) -> int:
    from harness import tracking
    from harness.loader import load_objects

    experiments, stem = load_objects(args.target, Experiment)
    experiments = apply_overrides(experiments, args.overrides)  # validated before any compute
    quiet_libraries()
    from harness.train import run_experiment

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    name = args.mlflow_experiment or stem
    tracking.use_tracking(uri, name)
    print(f"running {len(experiments)} experiment(s) into MLflow experiment {name!r} at {uri}")
    results = [run_experiment(exp) for exp in experiments]
    print()
    print(summary_table(results))
    print(
        f"\n{len(results)} run(s) logged to MLflow experiment {name!r}. Compare them with:\n"
        f"  {mlflow_ui_hint(uri)}"
    )
    return 0


def summary_table(results) -> str:
    header = f"{'experiment':<24} {'method':<7} {'beta':>6} {'gold':>7} {'KL':>7} {'pair acc':>8} {'time':>7}"
    lines = [header, "-" * len(header)]
    for r in results:
        m = r.metrics
        gold = f"{m['eval/gold/reward']:+.3f}" if "eval/gold/reward" in m else "-"
        acc = f"{m['eval/rewards/accuracies']:.2f}" if "eval/rewards/accuracies" in m else "-"
        lines.append(
            f"{r.experiment.name:<24} {r.experiment.method:<7} {r.experiment.beta:>6g} "
            f"{gold:>7} {m['eval/kl']:>7.3f} {acc:>8} {r.seconds:>6.1f}s"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate experiments, one MLflow run each")
    run.add_argument("target", help="experiments/FILE.py or module:OBJECT")
    add_override_args(run)
    add_tracking_args(run)
    run.add_argument(
        "--mlflow-experiment", help="MLflow experiment name (default: the file's stem)"
    )
    run.set_defaults(func=cmd_run)
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        ValueError,
        FileNotFoundError,
    ) as err:  # SpecError, DataError, DefinitionError: user input
        print(f"harness: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
