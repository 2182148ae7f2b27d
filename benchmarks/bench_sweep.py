"""Sweep throughput of a cold and a warm worker on the same trials.

A cold worker loads the reference model and tokenizer, scores the held-out pairs under the
reference, samples the reference for the step-0 evaluation and reads the cached reference
log-probs from disk again for every trial; a warm worker (what `harness sweep` runs) keeps
them in memory from one trial to the next. The same DPO/IPO sweep (same sampler seed, so the
same trials) runs with each worker in turn, after one untimed trial that builds the world and
the on-disk reference log-prob cache, so that neither variant pays for those. Each variant gets
fresh Optuna and MLflow stores (SQLite).

    python benchmarks/bench_sweep.py [--trials 6] [--steps 40] [--rounds 1]
writes results/benchmarks/sweep.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

OUT = Path("results/benchmarks/sweep.md")


def make_sweep(trials: int, steps: int):
    from harness import Choice, EvalSpec, Experiment, LogUniform, Sweep, TrainSpec

    base = Experiment(
        method="dpo",
        beta=0.1,
        dataset="sentiment",
        train=TrainSpec(steps=steps, eval_every=0, save_policy=False),
        eval=EvalSpec(n_prompts=16, n_pairs=16, max_new_tokens=16),
    )
    return Sweep(
        name="bench-sweep",
        base=base,
        n_trials=trials,
        pruner="none",
        space={"method": Choice(["dpo", "ipo"]), "beta": LogUniform(0.05, 1.0)},
    )


def run_variant(sweep, warm: bool) -> dict:
    from harness.run.sweep.study import StudySettings, finish, prepare_study, work

    with tempfile.TemporaryDirectory() as folder:
        settings = StudySettings(
            storage=f"sqlite:///{folder}/optuna.db",
            study_name=sweep.name,
            n_trials=sweep.n_trials,
            tracking_uri=f"sqlite:///{folder}/mlflow.db",
            mlflow_experiment="bench",
        )
        study, parent = prepare_study(sweep, settings)
        started = time.perf_counter()
        work(sweep, settings, log=lambda _: None, warm=warm)
        wall = time.perf_counter() - started
        finish(study, settings, parent)
        trials = sorted(study.trials, key=lambda t: t.number)
        durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
        params = [t.params for t in trials]
    return {"wall_s": wall, "per_trial": durations, "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=1, help="cold, warm pairs, alternated")
    args = parser.parse_args()
    from harness.commands.common import quiet_libraries

    quiet_libraries()
    run_variant(make_sweep(1, args.steps), warm=False)  # builds the world and disk caches
    sweep = make_sweep(args.trials, args.steps)
    results = {False: [], True: []}
    for _ in range(args.rounds):
        for warm in (False, True):
            results[warm].append(run_variant(sweep, warm))
            print(f"{'warm' if warm else 'cold'}: {results[warm][-1]}")
    assert all(r["params"] == results[False][0]["params"] for r in results[True])  # same trials
    rows, rates = [], {}
    for warm, label in ((False, "cold worker (reloads per trial)"), (True, "warm worker")):
        per = [d for r in results[warm] for d in r["per_trial"]]
        later = [d for r in results[warm] for d in r["per_trial"][1:]]
        wall = sum(r["wall_s"] for r in results[warm])
        rates[warm] = 3600 * len(per) / wall
        rows.append(
            f"| {label} | {statistics.mean(per):.2f} s | {statistics.mean(later):.2f} s | "
            f"{rates[warm]:.0f} |"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Sweep throughput: cold vs warm workers",
        "",
        f"Command: `python benchmarks/bench_sweep.py --trials {args.trials} --steps {args.steps} "
        f"--rounds {args.rounds}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load:.1f} at the end (the cores are "
        f"shared). One worker, {args.trials} DPO/IPO trials of {args.steps} steps (batch 16) on "
        "the sentiment world, the same sampled trials for both workers, alternated "
        f"{args.rounds} time(s).",
        "",
        "| worker | time per trial | trials after the first | trials per hour |",
        "|---|---:|---:|---:|",
        *rows,
        "",
        f"The warm worker runs {rates[True] / rates[False]:.2f}x the trials per hour of the cold "
        "one. Both log training metrics synchronously: MLflow's asynchronous queue, which the "
        "harness used before, made every run's end wait about 1.1 s.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\n\nwritten to {OUT}")


if __name__ == "__main__":
    main()
