"""Several processes, one experiment: which process is the main one, and how the others wait.

Training runs on every process (transformers.Trainer through accelerate: DDP, or FSDP from an
accelerate config). Everything else the harness does (MLflow, its evaluation yardstick, scoring,
saving the policy) runs on the main process while the others wait at a barrier; decisions the
main process takes alone (stop training early) are broadcast so every process stops together.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from harness.config.errors import UserError
from harness.infra.locations import free_port

# The other processes wait at a barrier while the main one evaluates and scores; NCCL's default
# timeout (10 min) is shorter than scoring a hub model can take.
BARRIER_TIMEOUT = timedelta(hours=2)
# Variables torchrun/accelerate set for a child process; a command started without them runs alone.
LAUNCH_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def launched() -> bool:
    """True when this process is one of several started by accelerate launch or torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def state() -> PartialState:
    # PartialState is a process-wide singleton and its first construction decides: without
    # cpu=True on a machine without CUDA it ignores WORLD_SIZE and every process trains alone.
    return PartialState(cpu=not torch.cuda.is_available(), timeout=BARRIER_TIMEOUT)


def is_main() -> bool:
    return not launched() or state().is_main_process


def num_processes() -> int:
    return state().num_processes if launched() else 1


def wait_for_everyone() -> None:
    if launched():
        state().wait_for_everyone()


def main_decides(value):
    """The main process's `value`, on every process."""
    if not launched():
        return value
    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def single_process_env() -> dict[str, str]:
    """This process's environment without the launcher's variables: a child started with it
    runs as one ordinary process (used to build caches while the other ranks wait)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in LAUNCH_VARIABLES and not k.startswith(("TORCHELASTIC_", "ACCELERATE_"))
    }


def launch_command(processes: int, harness_args: list[str]) -> list[str]:
    """`harness <harness_args>` again, as `processes` processes under accelerate (torchrun).

    One process per GPU with NCCL, or gloo on CPU (`--multi_gpu` is accelerate's name for
    multi-process DDP; this module's `state()` picks the CPU backend when there is no GPU).
    """
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",  # the experiment's model.dtype sets bf16/fp16 in its TrainingArguments
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),  # not the fixed 29500: two runs on one machine must not collide
    ]
    if not torch.cuda.is_available():  # processes share the cores instead of each taking all
        threads = max(1, (os.cpu_count() or 1) // processes)
        command += ["--num_cpu_threads_per_process", str(threads)]
    return command + ["-m", "harness", *harness_args]


class ProcessesError(UserError, ValueError):
    """`--processes` asks for what this machine cannot run."""


def check_processes(processes: int) -> None:
    """`--processes` must be >= 1, and on GPUs at most one per visible GPU."""
    if processes < 1:
        raise ProcessesError(f"--processes must be >= 1, got {processes}")
    gpus = torch.cuda.device_count()
    if gpus and processes > gpus:
        raise ProcessesError(
            f"--processes {processes}: this machine has {gpus} visible GPU(s), one process each; "
            f"use --processes {gpus} or fewer (CUDA_VISIBLE_DEVICES selects which)"
        )


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def round_robin(workers: int, gpus: list[str]) -> list[str | None]:
    """Worker i's GPU: gpus[i mod G]; None for every worker when there is no GPU."""
    return [gpus[i % len(gpus)] if gpus else None for i in range(workers)]
