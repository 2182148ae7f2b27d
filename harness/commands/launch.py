"""`--launcher slurm` for `harness sweep` and `harness run`: the same commands as SLURM jobs.

A sweep becomes one job array of `--workers` jobs, each one a `harness sweep` worker on the
shared study; `harness run` becomes one job per experiment. Everything that can be checked is
checked on the login node before the first `sbatch`: SLURM is there, the `--slurm` parameters
are submitit's, SLURM accepts them (`sbatch --test-only`), the stores can be shared by the
compute nodes and are reachable from here. The command then prints the job ids, their logs,
the `squeue` line and the MLflow link, and returns, or with `--wait` follows the jobs.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness.config.metrics import EVAL_GOLD_REWARD, EVAL_KL
from harness.infra.databases import mask
from harness.infra.locations import mlflow_ui_hint, resolve_tracking_uri
from harness.run import slurm

LOG_FOLDER = Path("results/slurm")  # one folder per job: submitit's pickles and the job's log
POLL_SECONDS = 5


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local: on this machine (default); slurm: submit SLURM jobs through submitit",
    )
    parser.add_argument(
        "--slurm",
        dest="slurm_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a submitit SLURM parameter, repeatable: partition=gpu, time=240 (minutes), "
        "gpus_per_node=1, cpus_per_task=8, mem_gb=32, account=..., qos=..., constraint=...",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="with --launcher slurm: follow the jobs until they end, then summarise",
    )


def slurm_executor(args, stores: dict[str, str], name: str):
    """The checked submitit executor for `--launcher slurm`, None for a local launch."""
    if args.launcher != "slurm":
        if args.slurm_options or args.wait:
            flag = "--slurm" if args.slurm_options else "--wait"
            raise slurm.LaunchError(f"{flag} needs --launcher slurm")
        return None
    slurm.check_sbatch()
    options = slurm.parse_slurm_options(args.slurm_options)
    for flag, url in stores.items():
        slurm.check_shared_store(flag, url)
    check_reachable(stores.get("--tracking-uri", ""))
    LOG_FOLDER.mkdir(parents=True, exist_ok=True)
    executor = slurm.make_executor(LOG_FOLDER.resolve() / "%j", options, name)
    slurm.check_accepted(executor)
    return executor


def check_reachable(uri: str) -> None:
    """An MLflow server must answer from the login node (MLflow itself retries for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return  # a database: opening it (use_tracking) says whether it is reachable
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10).close()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise slurm.LaunchError(
            f"--tracking-uri {mask(uri)} is unreachable from this node ({reason})"
        ) from None


def absolute_target(target: str) -> str:
    """A definition file's path made absolute (the jobs may start in another folder)."""
    module_part, sep, attr = target.partition(":")
    if module_part.endswith(".py"):
        module_part = str(Path(module_part).resolve())
    return f"{module_part}{sep}{attr}"


def sweep_worker_argv(args, settings, target: str) -> list[str]:
    """The `harness sweep` command each job of the array runs: one worker on the study."""
    argv = ["sweep", absolute_target(target), "--workers", "1", "--trials", str(settings.n_trials)]
    argv += ["--storage", settings.storage, "--study", settings.study_name]
    argv += ["--mlflow-experiment", settings.mlflow_experiment]
    argv += ["--tracking-uri", settings.tracking_uri]
    argv += ["--heartbeat-interval", str(settings.heartbeat_interval)]
    argv += ["--grace-period", str(settings.grace_period)]
    for override in args.overrides:
        argv += ["--set", override]
    return argv + (["--verbose"] if args.verbose else [])


def submit_sweep(executor, entry, argv: list[str], workers: int, settings, experiment_id: str):
    """`workers` jobs of `argv` as one array; returns them."""
    jobs = slurm.submit(executor, entry, [argv] * workers)
    ids = sorted({job.job_id.split("_")[0] for job in jobs})
    print(f"submitted {workers} sweep worker(s) as SLURM job array {', '.join(ids)}:")
    print_jobs(jobs, settings.tracking_uri, settings.mlflow_experiment, experiment_id)
    return jobs


def follow_sweep(jobs, study, budget: int) -> None:
    """One progress line (trials finished out of the budget, from the study) until the jobs end."""
    from optuna.trial import TrialState  # deferred like every Optuna import of the commands

    def line() -> str:
        trials = study.get_trials(deepcopy=False)
        counts = {s: sum(t.state == s for t in trials) for s in TrialState}
        finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
        failed = (
            f", {counts[TrialState.FAIL]} failed (retried once)" if counts[TrialState.FAIL] else ""
        )
        return f"trials finished {finished}/{budget}{failed}, {counts[TrialState.RUNNING]} running"

    follow(jobs, line)


def follow(jobs, progress) -> None:
    """Print `progress()` as one line (rewritten in place on a terminal) until no job is left."""
    shown = ""
    while True:
        left = slurm.jobs_left(jobs)
        text = f"{progress()}; {left} job(s) left"
        if text != shown:
            end = "" if sys.stdout.isatty() else "\n"
            print(f"\r{text}" if end == "" else text, end=end, flush=True)
            shown = text
        if left == 0:
            if sys.stdout.isatty():
                print()
            return
        time.sleep(POLL_SECONDS)


def print_jobs(jobs, uri: str, mlflow_experiment: str, experiment_id: str | None = None) -> None:
    for job in jobs:
        print(f"  job {job.job_id}: log {relative(job.paths.stdout)}")
    print(f"Watch them: {slurm.squeue_line(jobs)}")
    print(f"MLflow experiment {mlflow_experiment!r}: {mlflow_ui_hint(uri, experiment_id)}")


def relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def submit_runs(args, executor, experiments, mlflow_experiment: str) -> int:
    """One job per experiment, each a `harness run` of that experiment alone (with
    `--processes N` it trains through accelerate on N devices of its node, as locally)."""
    from harness.infra.stores import use_tracking  # deferred: MLflow (seconds)

    uri = resolve_tracking_uri(args.tracking_uri)
    experiment_id = use_tracking(uri, mlflow_experiment)  # reachable from here, and the link
    base = ["run", absolute_target(args.target), "--tracking-uri", uri]
    base += ["--mlflow-experiment", mlflow_experiment, "--processes", str(args.processes)]
    for override in args.overrides:
        base += ["--set", override]
    base += ["--verbose"] if args.verbose else []
    submitted_ms = int(time.time() * 1000)
    jobs = slurm.submit(executor, args.cli_main, [[*base, "--only", e.name] for e in experiments])
    print(f"submitted {len(jobs)} SLURM job(s), one per experiment:")
    for exp, job in zip(experiments, jobs, strict=True):
        print(f"  {exp.name}: job {job.job_id}, log {relative(job.paths.stdout)}")
    print(f"Watch them: {slurm.squeue_line(jobs)}")
    print(f"MLflow experiment {mlflow_experiment!r}: {mlflow_ui_hint(uri, experiment_id)}")
    if args.wait:
        runs = RunsSince(uri, experiment_id, submitted_ms)
        follow(jobs, lambda: f"runs finished {runs.count('FINISHED')}/{len(jobs)}")
        print(runs.summary())
    return 0


class RunsSince:
    """The MLflow runs of an experiment started since the jobs were submitted."""

    def __init__(self, uri: str, experiment_id: str, since_ms: int):
        from mlflow.tracking import MlflowClient  # deferred: MLflow (seconds)

        self.client, self.experiment_id, self.since_ms = MlflowClient(uri), experiment_id, since_ms

    def runs(self):
        from harness.infra.stores import all_runs  # deferred with MLflow

        query = f"attributes.start_time >= {self.since_ms}"
        return list(all_runs(self.client, [self.experiment_id], query, ["start_time ASC"]))

    def count(self, status: str) -> int:
        return sum(run.info.status == status for run in self.runs())

    def summary(self) -> str:
        lines = [f"{'run':<24} {'status':<9} {'gold':>7} {'KL':>7}"]
        for run in self.runs():
            metrics = run.data.metrics
            gold, kl = metrics.get(EVAL_GOLD_REWARD), metrics.get(EVAL_KL)
            lines.append(
                f"{run.info.run_name:<24} {run.info.status:<9} "
                f"{'-' if gold is None else f'{gold:+.3f}':>7} {'-' if kl is None else f'{kl:.3f}':>7}"
            )
        return "\n".join(lines)
