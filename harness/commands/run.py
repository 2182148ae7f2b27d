"""`harness run`: train and evaluate experiments, one MLflow run each.

With `--processes N` the command starts itself again as N processes through accelerate
(DDP); started directly by `accelerate launch` or `torchrun` it behaves the same. Either way
one experiment is one MLflow run, written by the main process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from harness.commands import launch
from harness.commands.common import (
    add_override_args,
    add_tracking_args,
    apply_overrides,
    quiet_libraries,
)
from harness.config.metrics import EVAL_GOLD_REWARD, EVAL_KL, EVAL_PAIR_ACCURACY
from harness.config.spec import Experiment
from harness.infra.databases import mask
from harness.infra.loader import load_objects
from harness.infra.locations import mlflow_ui_hint, resolve_tracking_uri


def register(subparsers) -> None:
    run = subparsers.add_parser(
        "run",
        help="train and evaluate experiments, one MLflow run each",
        description="Train and evaluate the experiments a file defines, one MLflow run each.",
        epilog="Settable fields (for --set): `harness fields` lists every dotted name with its "
        "default and meaning; `harness methods` lists the methods, what beta means for each, "
        "and their method_args.",
    )
    run.add_argument("target", help="experiments/FILE.py or module:OBJECT")
    add_override_args(run)
    add_tracking_args(run)
    run.add_argument(
        "--mlflow-experiment", help="MLflow experiment name (default: the file's stem)"
    )
    run.add_argument(
        "--processes",
        type=int,
        default=1,
        help="train each experiment on N processes through accelerate: DDP, one per GPU "
        "(or gloo on CPU); the batch size is per process",
    )
    launch.add_launcher_args(run)
    # Internal: build what the experiments need (worlds, judges) in one plain process.
    run.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    # Internal: the relaunching process has prepared already; the launched ones do not again.
    run.add_argument("--prepared", action="store_true", help=argparse.SUPPRESS)
    # Internal: the one experiment (by name) that a SLURM job of `--launcher slurm` runs.
    run.add_argument("--only", help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    uri = resolve_tracking_uri(args.tracking_uri)
    executor = launch.slurm_executor(args, {"--tracking-uri": uri}, name="harness-run")
    experiments, stem = load_objects(args.target, Experiment)
    experiments = apply_overrides(experiments, args.overrides)
    if args.only is not None:
        experiments = [exp for exp in experiments if exp.name == args.only]
    # Deferred: the registries and trainers import torch and TRL (seconds); a bad target or
    # `--set` above fails before that.
    from harness.data.models import resolve_dtype
    from harness.infra import distributed
    from harness.infra.cache import cache_root
    from harness.infra.stores import use_tracking
    from harness.methods.checks import check_distinct_names, resolve
    from harness.run.recipe import run_experiment

    # Every experiment is resolved (checked, defaults filled, named) before the first one trains.
    experiments = [resolve(exp) for exp in experiments]
    for resolved in experiments:  # a dtype this machine cannot run fails before loading
        resolve_dtype(resolved.experiment.model.dtype)
    check_distinct_names(experiments, args.target)
    cache_root()  # a $HARNESS_CACHE that is a file fails before anything is opened
    distributed.check_processes(args.processes)
    quiet_libraries()
    if executor is not None:
        return launch.submit_runs(args, executor, experiments, args.mlflow_experiment or stem)
    if args.prepare_only:
        return prepare(experiments)
    if args.processes > 1 and not distributed.launched():
        # This plain process has the stack imported already: it prepares, not a child of rank 0.
        prepare(experiments)
        command = distributed.launch_command(args.processes, [*harness_args(args), "--prepared"])
        print(f"starting {args.processes} processes: {' '.join(command)}", flush=True)
        return subprocess.run(command).returncode
    if distributed.launched() and not args.prepared:
        prepare_once(args)
    if not distributed.is_main():  # the other processes train; the main one reports
        for exp in experiments:
            run_experiment(exp)
        return 0
    name = args.mlflow_experiment or stem
    experiment_id = use_tracking(uri, name)
    print(
        f"running {len(experiments)} experiment(s) into MLflow experiment {name!r} at {mask(uri)}"
        + (f" on {distributed.num_processes()} processes" if distributed.launched() else "")
    )
    results = [run_experiment(exp) for exp in experiments]
    print()
    print(summary_table(results))
    print(
        f"\n{len(results)} run(s) logged to MLflow experiment {name!r} at {mask(uri)}; each run holds "
        "its metrics, samples, datasets and trained policy (an MLflow model).\n"
        f"Compare them in the MLflow UI:\n  {mlflow_ui_hint(uri, experiment_id)}"
    )
    return 0


def harness_args(args) -> list[str]:
    """This `harness run` command's arguments, without --processes."""
    out = ["run", args.target]
    for override in args.overrides:
        out += ["--set", override]
    for flag, value in (
        ("--tracking-uri", args.tracking_uri),
        ("--mlflow-experiment", args.mlflow_experiment),
        ("--only", args.only),
    ):
        if value:
            out += [flag, value]
    return out


def prepare(experiments) -> int:
    """Load every experiment's data and scoring judge: builds the worlds and reward models they
    need into the cache. Their builders train with transformers.Trainer, which would join the
    other processes' collective calls if run inside a multi-process job."""
    from harness.data.preference import load_preference_data
    from harness.evaluate.scoring import prepare_scoring

    for resolved in experiments:
        prepare_scoring(resolved, load_preference_data(resolved.experiment))
    return 0


def prepare_once(args) -> None:
    """Under several processes started by `accelerate launch` or torchrun themselves: the main
    process prepares in a plain child process (launcher variables removed) while the others wait
    at a barrier. (`--processes N` prepares before it launches them.)"""
    from harness.infra import distributed

    if distributed.is_main():
        command = [
            sys.executable,
            "-m",
            "harness.commands.cli",
            *harness_args(args),
            "--prepare-only",
        ]
        done = subprocess.run(command, env=distributed.single_process_env())
        if done.returncode != 0:
            raise SystemExit(done.returncode)
    distributed.wait_for_everyone()


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
        beta = f"{r.experiment.beta:g}" if r.uses_beta else "-"
        lines.append(
            f"{r.experiment.name:<24} {r.experiment.method:<7} {beta:>6} "
            f"{gold:>7} {m[EVAL_KL]:>7.3f} {acc:>8} {r.seconds:>6.1f}s"
        )
    return "\n".join(lines)
