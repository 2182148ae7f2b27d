"""lm-eval benchmarks of a policy: bundled world tasks, any lm-eval task, any user task folder.

Results are logged as `bench/{task}/{metric}` and `bench/{task}/{metric}_stderr` (lm-eval's
`acc,none` keys are not valid MLflow names), and the reference model's score, computed once
per (reference, tasks) and cached, as `bench/{task}/{metric}_reference`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from harness.config import metrics
from harness.config.errors import UserError
from harness.config.registry import did_you_mean
from harness.data.tasks import TASKS_DIR, world_task_folder
from harness.infra.cache import cached_dir, settings_key, source_fingerprint
from harness.infra.console import library_output
from harness.infra.devices import default_device

WORLD_TASKS = "world"  # in a task list: the tasks shipped for the dataset's built-in world


class BenchError(UserError, ValueError):
    """An lm-eval task or task folder that cannot be run; raised before anything is logged."""


@dataclass(frozen=True)
class BenchPlan:
    """Checked lm-eval tasks, ready to run on any model."""

    tasks: tuple[str, ...]
    folders: tuple[str, ...]  # searched before lm-eval's own tasks
    with_defaults: bool  # whether lm-eval's ~14,700 built-in tasks had to be indexed
    limit: int | None = None

    def task_manager(self):
        return task_manager(self.folders, self.with_defaults)

    def fingerprint(self) -> str:
        """A hash of the task names and every file in the task folders (the reference cache key).

        Files are named relative to their folder, so the key does not depend on where the
        project or the user's task folder lives.
        """
        files = {
            f"{i}/{f.relative_to(folder).as_posix()}": f.read_text(errors="replace")
            for i, folder in enumerate(self.folders)
            for f in sorted(Path(folder).rglob("*"))
            if f.is_file() and f.suffix in (".yaml", ".yml", ".jsonl", ".json", ".py")
        }
        return settings_key({"tasks": self.tasks, "limit": self.limit, "files": files})


@functools.cache
def task_manager(folders: tuple[str, ...], with_defaults: bool):
    """lm-eval's task index over `folders` (and its own tasks: seconds to build, so kept)."""
    from lm_eval.tasks import TaskManager  # lm-eval takes ~2 s to import: only when asked for

    return TaskManager(include_path=list(folders), include_defaults=with_defaults)


def plan_bench(
    tasks: tuple[str, ...],
    *,
    include_path: str | None = None,
    world: str | None = None,
    limit: int | None = None,
) -> BenchPlan:
    """Expand `world`, check every task name and the user folder; raise BenchError otherwise."""
    folders = [str(TASKS_DIR)]
    if include_path is not None:
        check_task_folder(include_path)
        folders.append(str(Path(include_path).resolve()))
    names: list[str] = []
    for name in tasks:
        if name == WORLD_TASKS:
            names += world_tasks(world)
        elif name not in names:
            names.append(name)
    if not names:
        return BenchPlan(tasks=(), folders=tuple(folders), with_defaults=False, limit=limit)
    manager = task_manager(tuple(folders), False)
    with_defaults = any(not manager.match_tasks([n]) for n in names)
    if with_defaults:  # indexing lm-eval's own tasks takes seconds: only when a name needs it
        manager = task_manager(tuple(folders), True)
    for name in names:
        if not manager.match_tasks([name]):
            raise BenchError(
                f"unknown lm-eval task {name!r}"
                + (did_you_mean(name, manager.all_tasks) or " (no close names)")
                + f". Searched {', '.join(folders)} and lm-eval's tasks."
            )
    return BenchPlan(
        tasks=tuple(names), folders=tuple(folders), with_defaults=with_defaults, limit=limit
    )


def world_tasks(world: str | None) -> list[str]:
    """Names of the tasks shipped for `world` (none for a dataset that is not a world)."""
    from lm_eval.tasks import TaskManager  # lm-eval takes ~2 s to import: only when asked for

    folder = world_task_folder(world) if world else None
    if folder is None or not folder.is_dir():
        return []
    return TaskManager(include_path=str(folder), include_defaults=False).all_subtasks


def check_task_folder(path: str) -> None:
    from lm_eval.tasks import TaskManager  # lm-eval takes ~2 s to import: only when asked for

    folder = Path(path)
    if not folder.is_dir():
        raise BenchError(f"--include-path {path}: not a folder")
    yamls = [p for p in folder.rglob("*.y*ml") if p.suffix in (".yaml", ".yml")]
    try:
        found = TaskManager(include_path=str(folder), include_defaults=False).all_tasks
    except Exception as err:  # lm-eval raises assorted errors on a broken YAML; name the folder
        raise BenchError(f"--include-path {path}: could not index its task YAMLs ({err})") from None
    if not found:
        raise BenchError(
            f"--include-path {path}: no valid lm-eval task YAML found ({len(yamls)} YAML file(s); "
            "a task YAML needs at least `task:` and `output_type:` or `include:`)"
        )


@contextlib.contextmanager
def without_environment_report(evaluator):
    """lm-eval ends every evaluation with torch's environment report (`add_env_info`: `pip
    list`, `nvidia-smi`, `lscpu`... as subprocesses, 0.8-1.0 s here) in results the harness
    does not keep (run_bench keeps results, versions, n-samples, higher_is_better)."""
    report = evaluator.add_env_info
    evaluator.add_env_info = lambda storage: None
    try:
        yield
    finally:
        evaluator.add_env_info = report


def run_bench(plan: BenchPlan, model, tokenizer, *, batch_size: int = 16) -> dict:
    """lm_eval.simple_evaluate on an already-loaded model; returns lm-eval's results dict."""
    import lm_eval  # ~2 s to import: only when tasks are scored
    import lm_eval.evaluator
    from lm_eval.models.huggingface import HFLM

    was_training = model.training
    model.eval()
    # lm-eval's per-task notices, and datasets' log of a task file it cannot read (the harness
    # reports that failure in one line, BenchError): the harness prints its own lines.
    quiet = [logging.getLogger(name) for name in ("lm_eval", "datasets")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    # lm-eval's progress bars ignore TQDM_DISABLE and its environment report runs `git`, which
    # complains outside a checkout: what it writes to stderr is shown only if it fails.
    try:
        with library_output(), without_environment_report(lm_eval.evaluator):
            lm = HFLM(
                pretrained=model,
                tokenizer=tokenizer,
                batch_size=batch_size,
                device=default_device(),
            )
            out = lm_eval.simple_evaluate(
                model=lm,
                tasks=list(plan.tasks),
                limit=plan.limit,
                task_manager=plan.task_manager(),
                log_samples=False,
                bootstrap_iters=1000,
            )
    except Exception as err:  # a task's data or config is broken: name the tasks, in one line
        root = err
        while root.__cause__ or root.__context__:
            root = root.__cause__ or root.__context__
        first = (str(root).splitlines() or [""])[0]
        raise BenchError(
            f"lm-eval failed on task(s) {', '.join(plan.tasks)}: {type(root).__name__}: {first}"
        ) from err
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
        model.train(was_training)
    return json.loads(
        json.dumps(
            {
                k: out[k]
                for k in ("results", "versions", "n-samples", "higher_is_better")
                if k in out
            },
            default=str,
        )
    )


def bench_metrics(results: dict, suffix: str = "") -> dict[str, float]:
    """`acc,none` -> bench/{task}/acc, `acc_stderr,none` -> bench/{task}/acc_stderr.

    A filter other than `none` stays in the name (`exact_match,strict-match` ->
    `exact_match_strict-match`); values lm-eval reports as "N/A" are left out.
    """
    out = {}
    for task, values in results.get("results", {}).items():
        for key, value in values.items():
            if "," not in key or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric, _, filt = key.partition(",")
            name = metric if filt == "none" else f"{metric}_{filt}"
            if suffix and name.endswith("_stderr"):
                continue
            out[metrics.bench(task, name, suffix)] = float(value)
    return out


def reference_results(plan: BenchPlan, reference, tokenizer, source: str, log=print) -> dict:
    """The reference model's lm-eval results, computed once per (reference, tasks) and cached."""

    def build(out: Path) -> None:
        results = run_bench(plan, reference, tokenizer)
        (out / "results.json").write_text(json.dumps(results, indent=1))

    key = {"reference": source_fingerprint(source), "tasks": plan.fingerprint()}
    folder = cached_dir("bench_reference", key, build, log=log)
    return json.loads((folder / "results.json").read_text())
