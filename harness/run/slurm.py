"""Harness commands as SLURM jobs, through submitit: the executor, its checks, the job itself.

`--slurm KEY=VALUE` takes submitit's own parameter names, not a list of the harness's: its
shared ones (timeout_min, mem_gb, cpus_per_task, gpus_per_node, nodes, tasks_per_node, name,
stderr_to_stdout) and its SLURM ones (partition, time, account, qos, constraint, gres, mem,
additional_parameters...), all checked here before anything is submitted. A job runs the same
`harness` command as a local run with the submitting shell's environment (sbatch exports it:
PATH, the virtualenv's python, PYTHONPATH, HF_*), in the same working directory.

Ending a job: `scancel` and SLURM's preemption send SIGTERM (then SIGKILL after KillWait): the
harness command stops as on Ctrl-C, its MLflow run ends KILLED, and a sweep's trial is failed
and retried by the other workers once its heartbeat stops. Near its time limit SLURM sends
SIGUSR2 (submitit's `--signal`): submitit requeues the job (`HarnessJob` is checkpointable: it
resumes as the same command, a sweep worker on the same study) and the run ends KILLED too.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import submitit
from submitit.auto.auto import AutoExecutor
from submitit.slurm import slurm as submitit_slurm

from harness.config.errors import UserError
from harness.infra.databases import JOURNAL_PREFIX, journal_path, mask


class LaunchError(UserError, ValueError):
    """A `--launcher slurm` request that cannot be submitted: one line, exit 2."""


def check_sbatch() -> None:
    if shutil.which("sbatch") is None:
        raise LaunchError(
            "--launcher slurm needs SLURM's `sbatch` on PATH, and there is none here: run "
            "this on the cluster's login node, or use --launcher local"
        )


def accepted_parameters() -> dict[str, type]:
    """submitit's parameter names for SLURM with their types: the shared ones first."""
    slurm_types = typing.get_type_hints(submitit_slurm._make_sbatch_string)
    slurm = {k: slurm_types[k] for k in submitit_slurm.SlurmExecutor._valid_parameters()}
    return {**AutoExecutor._typed_parameters(), **slurm}


def parse_slurm_options(options: list[str]) -> dict[str, typing.Any]:
    """`--slurm KEY=VALUE` values as submitit parameters, typed; an unknown key names them all."""
    accepted = accepted_parameters()
    parsed = {}
    for option in options:
        key, sep, text = option.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise LaunchError(f"--slurm {option!r}: expected KEY=VALUE, e.g. partition=gpu")
        if key not in accepted:
            names = ", ".join(sorted(accepted))
            raise LaunchError(f"--slurm {key!r} is not a submitit parameter; accepted: {names}")
        parsed[key] = typed_value(key, text, accepted[key])
    return parsed


def typed_value(key: str, text: str, kind) -> typing.Any:
    """`text` as the type submitit declares for `key` (int, float, bool, str, a dict as JSON)."""
    kinds = [k for k in typing.get_args(kind) if k is not type(None)] or [kind]
    for candidate in kinds:
        origin = typing.get_origin(candidate) or candidate
        try:
            if origin is bool:
                if text.lower() in ("true", "false", "1", "0", "yes", "no"):
                    return text.lower() in ("true", "1", "yes")
                continue
            if origin in (int, float):
                return origin(text)
            if origin is str:
                return text
            value = json.loads(text)  # dict (additional_parameters) or list (setup, srun_args)
            if isinstance(value, dict | list):
                return value
        except ValueError:
            continue
    names = " or ".join(getattr(k, "__name__", str(k)) for k in kinds)
    raise LaunchError(f"--slurm {key}={text!r}: expected {names}")


def check_shared_store(flag: str, url: str) -> None:
    """Refuse a store the compute nodes cannot share: a SQLite file, or a relative path."""
    instead = (
        "an MLflow server (http://TRACKHOST:5000)"
        if flag == "--tracking-uri"
        else f"PostgreSQL (postgresql://USER@DBHOST:5432/optuna) or {JOURNAL_PREFIX}/SHARED/PATH"
    )
    if urlsplit(url).scheme.split("+")[0] == "sqlite":
        raise LaunchError(
            f"{flag} {mask(url)} is a SQLite file: with --launcher slurm the compute nodes would "
            f"each open their own file (or lock one over the network); use {instead}"
        )
    journal = journal_path(url)
    if journal is not None and not journal.is_absolute():
        raise LaunchError(
            f"{flag} {url}: a relative path, which each compute node would resolve in its own "
            "working folder; give an absolute path on a file system the nodes share"
        )
    if journal is None and not urlsplit(url).scheme:
        raise LaunchError(
            f"{flag} {url}: a local folder, which each compute node would open on its own disk; "
            f"use {instead}"
        )


def make_executor(folder: Path, options: dict[str, typing.Any], name: str) -> AutoExecutor:
    """submitit's executor for SLURM, logs under `folder`, with the checked `options`."""
    executor = AutoExecutor(folder=folder, cluster="slurm")
    shared = AutoExecutor._valid_parameters()
    executor.update_parameters(
        name=name,
        **{(k if k in shared else f"slurm_{k}"): v for k, v in options.items()},
    )
    return executor


def check_accepted(executor: AutoExecutor) -> None:
    """Ask SLURM whether it would run this job (`sbatch --test-only`: nothing is submitted); its
    refusal (an unknown partition, too many GPUs, a QOS) in its own words."""
    inner = executor._executor
    with tempfile.NamedTemporaryFile("w", suffix=".sh", dir=inner.folder.parent) as script:
        script.write(inner._make_submission_file_text("true", "test-only"))
        script.flush()
        done = subprocess.run(
            ["sbatch", "--test-only", script.name], capture_output=True, text=True, timeout=60
        )
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        reason = (errors or done.stderr.splitlines() or ["no reason given"])[-1]
        reason = reason.removeprefix("sbatch: error: ")
        raise LaunchError(f"SLURM refuses the job ({submitit_options(executor)}): {reason}")


def submitit_options(executor: AutoExecutor) -> str:
    params = executor._executor.parameters
    shown = {k: v for k, v in params.items() if k in ("partition", "time", "gpus_per_node")}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "default partition"


class HarnessJob(submitit.helpers.Checkpointable):
    """A harness command (`entry(argv)`, the CLI's main) run by a SLURM job; requeued whole
    when preempted or near its time limit (submitit calls `checkpoint`, then requeues)."""

    def __init__(self, entry: Callable[[list[str]], int], argv: list[str]):
        self.entry, self.argv = entry, argv

    def __call__(self) -> int:
        interrupt_after(signal.SIGUSR2)
        code = self.entry(self.argv)
        if code:  # the job is FAILED in SLURM (and its log says why)
            sys.exit(code)
        return code


def interrupt_after(signum: int) -> None:
    """Let submitit's handler for `signum` checkpoint and requeue the job, then stop the command
    as Ctrl-C would (its run ends KILLED) instead of with submitit's exit (a FAILED run)."""
    submitit_handler = signal.getsignal(signum)
    if not callable(submitit_handler):
        return

    def handler(number, frame):
        try:
            submitit_handler(number, frame)
        except BaseException as err:  # sys.exit after requeueing, or "not requeued"
            # The requeue makes SLURM send SIGTERM at once: the command is stopping already,
            # and a second interrupt would cut short the ending of its run and trial.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            raise KeyboardInterrupt(f"SLURM signal {signal.Signals(number).name}: {err}") from None

    signal.signal(signum, handler)


def submit(executor: AutoExecutor, entry, argvs: list[list[str]]) -> list[submitit.Job]:
    """One job per command line, as one job array when there are several; SLURM's refusal in
    one line."""
    try:
        with executor.batch():
            jobs = [executor.submit(HarnessJob(entry, argv)) for argv in argvs]
    except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError) as err:
        raise LaunchError(f"sbatch refused the job: {str(err).strip().splitlines()[-1]}") from None
    return jobs


def squeue_line(jobs: list[submitit.Job]) -> str:
    ids = sorted({job.job_id.split("_")[0] for job in jobs})
    return f"squeue --jobs {','.join(ids)}"


def jobs_left(jobs: list[submitit.Job]) -> int:
    """Jobs still pending or running, by squeue (not sacct: clusters without accounting warn)."""
    ids = ",".join(sorted({job.job_id.split("_")[0] for job in jobs}))
    done = subprocess.run(
        ["squeue", "--noheader", "--array", "--jobs", ids, "--format", "%i"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:  # squeue forgets finished jobs (MinJobAge): none left
        return 0
    return len(done.stdout.split())
