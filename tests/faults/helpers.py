"""What the fault tests share: a tiny experiment file, `harness` in its own process, and the
check that a user sees one line naming the thing."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A run small enough to start in seconds on the sentiment world (built once, shared).
TINY = dict(
    steps=6,
    batch_size=8,
    eval_every=0,
    log_every=1,
    n_prompts=8,
    n_pairs=16,
    max_new_tokens=8,
    max_pairs=None,
)


def experiment_file(folder: Path, name: str = "tiny", **train) -> Path:
    """A definition file with one DPO experiment on the sentiment world; `train` overrides."""
    t = TINY | train
    path = folder / f"{name}.py"
    path.write_text(
        "from harness import DataSpec, EvalSpec, Experiment, TrainSpec\n\n"
        f"EXP = Experiment(name={name!r}, method='dpo', beta=0.1, dataset='sentiment',\n"
        f"    data=DataSpec(max_pairs={t['max_pairs']}),\n"
        f"    train=TrainSpec(steps={t['steps']}, batch_size={t['batch_size']}, "
        f"eval_every={t['eval_every']}, log_every={t['log_every']}),\n"
        f"    eval=EvalSpec(n_prompts={t['n_prompts']}, n_pairs={t['n_pairs']}, "
        f"max_new_tokens={t['max_new_tokens']}))\n"
    )
    return path


def harness_env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def run_together(target, args: tuple, n: int, preload: tuple[str, ...]) -> tuple[list, list]:
    """`n` separate processes of `target(*args, barrier, results)`, each with its own
    connections, to be released together by the shared `barrier`: what each put on `results`
    (in the order they finished) and their exit codes. They fork from a server that imported
    `preload` once (as `harness sweep` starts its workers), so none pays the imports (MLflow:
    3 s of CPU a process here). The server is this test process's, started on first use; a
    later call's modules are imported by the children that need them."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    barrier, results = context.Barrier(n), context.Queue()
    processes = [context.Process(target=target, args=(*args, barrier, results)) for _ in range(n)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return outcomes, [process.exitcode for process in processes]


def ctrl_c_as_in_a_terminal() -> None:
    """preexec_fn for a child that is to be Ctrl-C'd: SIGINT at its default. A `make test`
    started in the background (`cmd &`, nohup, some CI runners) has SIGINT ignored, every child
    inherits that, and Python then never raises KeyboardInterrupt (measured: every round of
    the interrupted-writes test and both signal tests "not interrupted" in such a run)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_harness(*args: str, cwd: Path, group: bool = False) -> subprocess.Popen:
    """`harness ARGS` as a user runs it, in its own process (to signal or kill it); with
    `group`, in its own process group (to signal it and its workers as a terminal does)."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness.commands.cli", *args],
        cwd=cwd,
        env=harness_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
        process_group=0 if group else None,
    )


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 300) -> list[str]:
    """Read the process's stdout until a line contains `text`; the lines read."""
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    process.send_signal(signal.SIGKILL)
    raise AssertionError(f"never printed {text!r}; stdout: {''.join(lines)[-2000:]}")


def error_lines(stderr: str) -> list[str]:
    """The harness's own lines on stderr (libraries may warn there too)."""
    return [line for line in stderr.splitlines() if line.startswith("harness:")]


def assert_one_line(stderr: str, *names: str) -> str:
    """stderr holds one harness line, no traceback, naming every one of `names`; returns it."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]
