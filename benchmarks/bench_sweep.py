"""Sweep throughput with and without the shared reference log-prob cache.

The same small DPO/IPO sweep (same sampler seed, so the same trials) runs twice: once with
`train.reference_cache=False` (TRL's default: the reference model runs a forward pass on every
training batch), once with the harness's disk cache (reference log-probs computed by the first
trial, loaded by every later one). Each variant gets a fresh Optuna and MLflow store; the cache
folder is emptied before the cached variant so its first trial pays for the computation.

    python benchmarks/bench_sweep.py [--trials 6] [--steps 40]
writes results/benchmarks/sweep.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

OUT = Path("results/benchmarks/sweep.md")


def make_sweep(trials: int, steps: int, cache: bool):
    from harness import Choice, EvalSpec, Experiment, LogUniform, Sweep, TrainSpec

    base = Experiment(
        method="dpo",
        beta=0.1,
        dataset="sentiment",
        train=TrainSpec(steps=steps, eval_every=0, save_policy=False, reference_cache=cache),
        eval=EvalSpec(n_prompts=16, n_pairs=16, max_new_tokens=16),
    )
    return Sweep(
        name=f"bench-cache-{cache}",
        base=base,
        n_trials=trials,
        pruner="none",
        space={"method": Choice(["dpo", "ipo"]), "beta": LogUniform(0.05, 1.0)},
    )


def run_variant(trials: int, steps: int, cache: bool) -> dict:
    from harness.cache import cache_root
    from harness.sweep.study import StudySettings, finish, prepare_study, work

    sweep = make_sweep(trials, steps, cache)
    if cache:
        shutil.rmtree(cache_root() / "reference_logps", ignore_errors=True)
    with tempfile.TemporaryDirectory() as folder:
        settings = StudySettings(
            storage=f"sqlite:///{folder}/optuna.db",
            study_name=sweep.name,
            n_trials=trials,
            tracking_uri=f"sqlite:///{folder}/mlflow.db",
            mlflow_experiment="bench",
        )
        study, parent = prepare_study(sweep, settings)
        started = time.perf_counter()
        work(sweep, settings, log=lambda _: None)
        wall = time.perf_counter() - started
        finish(study, settings, parent)
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials]
    return {"wall_s": wall, "per_trial": durations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    from harness.commands.common import quiet_libraries

    quiet_libraries()
    results = {}
    for cache in (False, True):
        results[cache] = run_variant(args.trials, args.steps, cache)
        print(f"reference cache {'on' if cache else 'off'}: {results[cache]}")
    off, on = results[False], results[True]
    rows = []
    for label, r in (
        ("reference forward every step (TRL default)", off),
        ("harness reference cache", on),
    ):
        per = r["per_trial"]
        rows.append(
            f"| {label} | {statistics.mean(per):.2f} s | {per[0]:.2f} s | "
            f"{statistics.mean(per[1:]):.2f} s | {3600 * len(per) / r['wall_s']:.0f} |"
        )
    lines = [
        "# Sweep throughput: shared reference log-prob cache",
        "",
        f"Command: `python benchmarks/bench_sweep.py --trials {args.trials} --steps {args.steps}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        f"One worker, {args.trials} DPO/IPO trials of {args.steps} steps (batch 16) on the sentiment world, "
        "the same sampled trials in both variants.",
        "",
        "| variant | time per trial | first trial | later trials | trials per hour |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        f"Later trials with the cache take {statistics.mean(on['per_trial'][1:]) / statistics.mean(off['per_trial'][1:]):.2f}x "
        f"the time of the same trials without it; the whole sweep {on['wall_s'] / off['wall_s']:.2f}x.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\n\nwritten to {OUT}")


if __name__ == "__main__":
    main()
