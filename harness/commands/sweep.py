"""`harness sweep`: run a Sweep's Optuna study with one or several worker processes."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import socket
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.commands import launch
from harness.commands.common import (
    add_override_args,
    add_tracking_args,
    apply_overrides,
    quiet_libraries,
)
from harness.config.errors import UserError
from harness.config.space import Sweep, SweepError
from harness.infra.databases import mask
from harness.infra.loader import load_module, load_objects
from harness.infra.locations import DEFAULT_OPTUNA_STORAGE, mlflow_ui_hint, resolve_tracking_uri
from harness.infra.signals import release_cut_statements, stop_on_signals

STOP_SECONDS = 30  # how long stopped workers may take to end their trials before SIGKILL
# What every trial skips unless `--set` says otherwise: a study compares trials by their
# metrics, and saving each trial's policy as an MLflow model is a fixed cost per trial
# (results/benchmarks/sweep.md). `--set train.save_policy=true` saves them.
TRIAL_DEFAULTS = ("train.save_policy=false",)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run an Optuna sweep over experiments (resumable)",
        description="Run a Sweep's Optuna study. Trials run with train.save_policy=False (no "
        "trial's policy is saved as an MLflow model) unless --set train.save_policy=true.",
    )
    p.add_argument("target", help="experiments/FILE.py or module:OBJECT naming Sweep objects")
    p.add_argument("--trials", type=int, help="trial budget (default: the sweep's n_trials)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on the study")
    p.add_argument(
        "--storage",
        default=DEFAULT_OPTUNA_STORAGE,
        help="Optuna storage: a SQLAlchemy URL or journal:PATH, Optuna's journal file for a "
        "shared file system (default: %(default)s)",
    )
    p.add_argument("--study", help="study name (default: the sweep's name)")
    p.add_argument("--mlflow-experiment", help="MLflow experiment (default: the study's name)")
    p.add_argument(
        "--heartbeat-interval", type=int, default=10, help="seconds between trial heartbeats"
    )
    p.add_argument(
        "--grace-period",
        type=int,
        default=60,
        help="seconds without heartbeat after which a trial's worker counts as dead",
    )
    add_override_args(p)
    add_tracking_args(p)
    launch.add_launcher_args(p)
    p.set_defaults(func=cmd_sweep)


def load_sweeps(target: str, overrides: list[str], trials: int | None) -> tuple[list[Sweep], str]:
    """The target's sweeps with TRIAL_DEFAULTS, then `--set`, applied to each base experiment,
    validated."""
    from harness.methods.checks import check_sweep  # deferred: the registries import TRL (seconds)

    sweeps, stem = read_sweeps(target, overrides, trials)
    for sweep in sweeps:
        check_sweep(sweep)
    return sweeps, stem


def read_sweeps(target: str, overrides: list[str], trials: int | None) -> tuple[list[Sweep], str]:
    """As load_sweeps, not yet validated against the registries (no torch imported)."""
    sweeps, stem = load_objects(target, Sweep)
    out = []
    for sweep in sweeps:
        changes = {"base": apply_overrides([sweep.base], [*TRIAL_DEFAULTS, *overrides])[0]}
        if trials is not None:
            changes["n_trials"] = trials
        out.append(dataclasses.replace(sweep, **changes))
    return out, stem


@dataclass(frozen=True)
class WorkerStart:
    """How this machine's worker processes start: the multiprocessing context, and each
    worker's GPU (None for every worker without GPUs)."""

    context: object
    gpus: list[str | None]


def cmd_sweep(args) -> int:
    if args.workers < 1:
        raise SweepError(f"--workers must be >= 1, got {args.workers}")
    uri = resolve_tracking_uri(args.tracking_uri)
    stores = {"--storage": args.storage, "--tracking-uri": uri}
    executor = launch.slurm_executor(args, stores, name="harness-sweep")
    quiet_libraries()
    start = None
    if executor is None and args.workers > 1:
        sweeps, start = checked_where_workers_start(args)
    else:  # the one worker is this process, or SLURM's jobs start their own
        sweeps, _ = load_sweeps(args.target, args.overrides, args.trials)
    if args.study and len(sweeps) > 1:
        raise SweepError(f"--study names one study, but {args.target} defines {len(sweeps)} sweeps")
    from harness.infra.stores import open_store  # deferred: MLflow (a second)

    if args.storage == DEFAULT_OPTUNA_STORAGE:
        Path("results").mkdir(exist_ok=True)
    open_store(uri)  # checked (and its dead runs reaped) before the Optuna storage is touched
    for sweep in sweeps:
        run_sweep(args, sweep, uri, executor, start)
    return 0


def run_sweep(args, sweep: Sweep, uri: str, executor, start: WorkerStart | None = None) -> None:
    """One sweep's study, its workers (here, or a SLURM job array) and its summary."""
    # Deferred: studies import torch, TRL and Optuna (seconds); arguments are checked first.
    from harness.infra.stores import use_tracking
    from harness.run.sweep.study import StudySettings, finish, prepare_study

    study_name = args.study or sweep.name
    settings = StudySettings(
        storage=args.storage,
        study_name=study_name,
        n_trials=sweep.n_trials,
        tracking_uri=uri,
        mlflow_experiment=args.mlflow_experiment or study_name,
        heartbeat_interval=args.heartbeat_interval,
        grace_period=args.grace_period,
    )
    study, parent = prepare_study(sweep, settings)
    print(
        f"sweep {settings.study_name!r}: budget {settings.n_trials} trials x {len(sweep.seeds)} seed(s), "
        f"{args.workers} worker(s), storage {mask(settings.storage)}"
    )
    if executor is None:
        summary = run_here(args, settings, sweep, study, parent, start)
    elif submit_to_slurm(args, executor, settings, sweep, study):
        summary = finish(study, settings, parent)
    else:
        return  # the workers end the parent run; this command has nothing left to do
    print(summary_text(study, settings, summary))
    experiment_id = use_tracking(uri, settings.mlflow_experiment)
    print(
        f"Trials: MLflow runs nested under the sweep's parent run in experiment "
        f"{settings.mlflow_experiment!r} at {mask(uri)}; compare them in the MLflow UI:\n"
        f"  {mlflow_ui_hint(uri, experiment_id)}"
    )


def run_here(args, settings, sweep: Sweep, study, parent: str, start: WorkerStart | None) -> dict:
    """The workers on this machine, then the study's summary. Meanwhile the parent run keeps a
    heartbeat (a SIGKILLed command's parent run is reaped by the next command); Ctrl-C or
    SIGTERM stops the workers and ends every trial they held and the parent run."""
    from harness.infra.stores import Heartbeat, this_process
    from harness.run.sweep.study import (
        StorageLost,
        end_interrupted,
        end_storage_lost,
        finish,
        storage_lost,
    )

    workers = {this_process()}  # and each worker process's, once started
    with Heartbeat(parent, tracking_uri=settings.tracking_uri):
        try:
            run_workers(args, settings, sweep, workers, start)
            with storage_lost(settings, "at the end of the sweep"):
                return finish(study, settings, parent)
        except StorageLost as err:
            raise end_storage_lost(settings, parent, err) from None
        except KeyboardInterrupt as err:  # this process's trial (one worker) is already ended
            release_cut_statements(err)
            ended = end_interrupted(study, settings, parent, workers)
            raise KeyboardInterrupt(f"{err}; {ended}" if str(err) else ended) from None


def submit_to_slurm(args, executor, settings, sweep: Sweep, study) -> bool:
    """The workers as a SLURM job array; True when they ended here (`--wait`)."""
    from harness.infra.stores import use_tracking

    experiment_id = use_tracking(settings.tracking_uri, settings.mlflow_experiment)
    argv = launch.sweep_worker_argv(args, settings, worker_target(args.target, sweep))
    jobs = launch.submit_sweep(executor, args.cli_main, argv, args.workers, settings, experiment_id)
    if args.wait:
        launch.follow_sweep(jobs, study, settings.n_trials)
    return args.wait


def worker_target(target: str, sweep: Sweep) -> str:
    """`target` naming this one sweep, for a worker process that loads it again."""
    return target if ":" in target else f"{target}:{_attr_name(target, sweep)}"


def run_workers(args, settings, sweep: Sweep, workers: set[str], start: WorkerStart | None) -> None:
    """`args.workers` workers on the study (in this process when there is one, else child
    processes started as `start` says); each started worker's host:pid is added to `workers`.
    On Ctrl-C or SIGTERM, the workers are stopped (stop_workers) before the KeyboardInterrupt
    goes on."""
    if args.workers == 1:
        from harness.run.sweep.study import work

        work(sweep, settings)
        return
    context, gpus = start.context, start.gpus
    if gpus[0] is not None:
        print("GPUs: " + ", ".join(f"worker {i} -> GPU {g}" for i, g in enumerate(gpus)))
    target = worker_target(args.target, sweep)
    processes = [
        context.Process(
            target=_worker_main, args=(target, args.overrides, args.trials, settings, f"[w{i}] ")
        )
        for i in range(args.workers)
    ]
    try:
        for process, gpu in zip(processes, gpus, strict=True):
            with only_gpu(gpu):  # a spawned worker inherits the environment at start
                process.start()
            workers.add(f"{socket.gethostname()}:{process.pid}")
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        stop_workers([p for p in processes if p.pid is not None])
        raise
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        print(
            f"warning: {len(failed)} worker(s) exited with codes {failed}; rerun the command to resume"
        )


def checked_where_workers_start(args) -> tuple[list[Sweep], WorkerStart]:
    """The target's sweeps, validated in a process forked from the workers' forkserver, and
    how the workers start.

    Without GPUs the workers fork from a forkserver that imports the stack once (8-10 s of CPU
    a process here) and forks every worker from that clean state. Validating the sweeps
    (`harness.methods.checks` imports torch, transformers and TRL) in a process forked from it
    too leaves this process without them: 7 s of CPU less per sweep. That process also counts
    the GPUs. Workers given GPUs are spawned afresh instead: each must see only its
    CUDA_VISIBLE_DEVICES before torch first looks at the devices, which a server forked after
    importing torch cannot promise (torch caches the device count). Never fork this process:
    torch and SQLite connections do not survive a fork safely.
    """
    from harness.run.sweep.trial import TRAINING_IMPORTS

    sweeps, _ = read_sweeps(args.target, args.overrides, args.trials)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["harness.run.sweep.study", *TRAINING_IMPORTS])
    receive, send = context.Pipe(duplex=False)
    checker = context.Process(
        target=_check_sweeps, args=(args.target, args.overrides, args.trials, args.workers, send)
    )
    checker.start()
    send.close()
    try:
        outcome, detail = receive.recv()
    except EOFError:  # it died before it could say
        checker.join()
        outcome, detail = "crash", f"its process exited with code {checker.exitcode}"
    finally:
        if checker.is_alive():  # Ctrl-C here
            checker.terminate()
        checker.join()
    if outcome == "error":
        raise SweepError(detail)
    if outcome == "crash":
        raise RuntimeError(f"checking the sweeps failed: {detail}")
    on_gpus = detail[0] is not None
    return sweeps, WorkerStart(multiprocessing.get_context("spawn") if on_gpus else context, detail)


def _check_sweeps(target, overrides, trials, workers, send) -> None:
    """checked_where_workers_start's process: sends ("ok", each worker's GPU), ("error", the
    user error's line) or ("crash", a traceback)."""
    try:
        from harness.infra.distributed import round_robin, visible_gpus

        load_sweeps(target, overrides, trials)
        send.send(("ok", round_robin(workers, visible_gpus())))
    except UserError as err:
        send.send(("error", str(err)))
    except KeyboardInterrupt:  # the command is stopping too, and says so
        pass
    except Exception:
        send.send(("crash", traceback.format_exc()))


def stop_workers(processes, grace: float = STOP_SECONDS) -> None:
    """SIGTERM to each live worker (each ends its trial and run, as on Ctrl-C), at most `grace`
    seconds to do so (a second Ctrl-C stops the wait), then SIGKILL for the rest."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace
    try:
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()


@contextmanager
def only_gpu(gpu: str | None):
    """CUDA_VISIBLE_DEVICES=gpu while inside (unchanged when gpu is None)."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def _attr_name(target: str, sweep: Sweep) -> str:
    module = load_module(target)
    return next(
        name
        for name, value in vars(module).items()
        if value == sweep or getattr(value, "name", None) == sweep.name
    )


def _worker_main(
    target: str, overrides: list[str], trials: int | None, settings, prefix: str
) -> None:
    """A worker process: one line and exit 130 when stopped (no traceback per worker)."""
    stop_on_signals(once=True)  # the parent kills a worker that takes too long to end
    try:
        from harness.run.sweep.study import work  # preloaded by the forkserver, else seconds

        os.environ.setdefault("TQDM_DISABLE", "1")
        quiet_libraries()
        sweep = load_sweeps(target, overrides, trials)[0][0]
        work(sweep, settings, worker=prefix)
    except KeyboardInterrupt as err:
        print(f"harness: {prefix}interrupted{f': {err}' if str(err) else ''}", file=sys.stderr)
        sys.exit(130)
    except UserError as err:  # the storage went away, say
        print(f"harness: {prefix}error: {err}", file=sys.stderr)
        sys.exit(2)


def summary_text(study, settings, summary) -> str:
    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary["counts"].items() if n)
    lines = [f"\nstudy {settings.study_name!r}: {counts}"]
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        value = "" if t.value is None else f"{t.value:+.4f}"
        lines.append(f"  trial {t.number:>3} {t.state.name.lower():<9} {value:>9}  {t.params}")
    if summary["best"] is not None:
        best = summary["best"]
        lines.append(f"best: trial {best.number}, value {best.value:+.4f}, params {best.params}")
    lines.append(f"Optuna storage: {mask(settings.storage)} (study {settings.study_name!r})")
    return "\n".join(lines)
