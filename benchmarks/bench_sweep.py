"""A sweep trial's fixed cost: seconds in training against seconds in everything else.

One sweep worker (what `harness sweep` runs) on a DPO/IPO sweep of the sentiment world. Every
trial's wall time (the worker's, over its trials) is split by timing the calls where each stage
happens: `trainer.train()`, the trainer's set-up (TRL tokenizes the data), the harness's
step-0 and final evaluations (with the reference's held-out scores), the run's creation, its
params, its dataset inputs, the sample table, the policy saved as an MLflow model, data and
models loaded, the trial's claim; what is left is Optuna's bookkeeping, tags and checks. Two variants alternate
`--repeats` times (at least 5), each on fresh Optuna and MLflow stores (SQLite), after one
untimed trial that builds the world and the reference log-prob cache: the sweep default
(`train.save_policy=False`, `harness sweep`'s TRIAL_DEFAULTS) and every trial's policy saved
(`--set train.save_policy=true`). A figure is the median over repeats of the repeat's mean per
trial, with the min-max of the repeats in brackets.

    python benchmarks/bench_sweep.py [--trials 3] [--steps 40] [--repeats 5]
writes results/benchmarks/sweep.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from timing import seconds_of_calls  # benchmarks/, the script's own folder

OUT = Path("results/benchmarks/sweep.md")
TARGET_SHARE = 0.40  # everything else, at most this share of a 40-step toy trial
VARIANTS = {"sweep default (train.save_policy=False)": False, "every policy saved": True}


def make_sweep(trials: int, steps: int, save_policy: bool):
    from harness import Choice, EvalSpec, Experiment, LogUniform, Sweep, TrainSpec

    base = Experiment(
        method="dpo",
        beta=0.1,
        dataset="sentiment",
        train=TrainSpec(steps=steps, eval_every=0, save_policy=save_policy),
        eval=EvalSpec(n_prompts=16, n_pairs=16, max_new_tokens=16),
    )
    return Sweep(
        name="bench-sweep",
        base=base,
        n_trials=trials,
        pruner="none",
        space={"method": Choice(["dpo", "ipo"]), "beta": LogUniform(0.05, 1.0)},
    )


def stage_clocks() -> dict[str, list[float]]:
    """Seconds of every call of each stage, from now on in this process (names as reported)."""
    import mlflow
    import transformers

    from harness.evaluate.core import Evaluator
    from harness.run import recipe
    from harness.run.sweep import study

    places = {
        "trial": (study, "work"),  # divided by the trials: claims and all
        "claim (Optuna)": (study, "claim_trial"),
        "training (`trainer.train()`)": (transformers.Trainer, "train"),
        "train_policy": (recipe, "train_policy"),
        "evaluations (step 0, final)": (Evaluator, "evaluate"),
        "reference's held-out scores": (Evaluator, "__init__"),
        "run creation": (mlflow, "start_run"),
        "params": (mlflow, "log_params"),
        "dataset inputs": (recipe, "log_datasets"),
        "sample table": (mlflow, "log_table"),
        "policy saved (MLflow model)": (recipe, "save_policy"),
        "data loaded": (recipe, "load_preference_data"),
        "models loaded": (recipe, "load_models"),
    }
    return {name: seconds_of_calls(owner, attr) for name, (owner, attr) in places.items()}


def per_trial(clocks: dict[str, list[float]], start: dict[str, int], trials: int) -> dict:
    """Mean seconds per trial of each stage since `start` (each clock's length then)."""
    spent = {name: sum(seconds[start[name] :]) / trials for name, seconds in clocks.items()}
    training = spent["training (`trainer.train()`)"]
    spent["trainer set-up (TRL tokenizes the data)"] = spent.pop("train_policy") - training
    named = sum(v for k, v in spent.items() if k not in ("trial", "training (`trainer.train()`)"))

    spent["the rest (Optuna, tags, checks)"] = spent["trial"] - training - named
    spent["everything else"] = spent["trial"] - training
    return spent


def run_variant(sweep, clocks) -> dict:
    from harness.run.sweep.study import StudySettings, finish, prepare_study, work

    start = {name: len(seconds) for name, seconds in clocks.items()}
    with tempfile.TemporaryDirectory() as folder:
        settings = StudySettings(
            storage=f"sqlite:///{folder}/optuna.db",
            study_name=sweep.name,
            n_trials=sweep.n_trials,
            tracking_uri=f"sqlite:///{folder}/mlflow.db",
            mlflow_experiment="bench",
        )
        study, parent = prepare_study(sweep, settings)
        work(sweep, settings, log=lambda _: None)
        finish(study, settings, parent)
        params = [t.params for t in sorted(study.trials, key=lambda t: t.number)]
    return {"stages": per_trial(clocks, start, sweep.n_trials), "params": params}


def cell(values: list[float], fmt: str = "{:.2f} s") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def report(args, results: dict, load: tuple[float, float]) -> list[str]:
    default, saved = (results[label] for label in VARIANTS)
    shares = {
        label: [r["stages"]["everything else"] / r["stages"]["trial"] for r in runs]
        for label, runs in results.items()
    }
    stages = list(default[0]["stages"])
    rows = [
        f"| {stage} | {cell([r['stages'][stage] for r in default])} | "
        f"{cell([r['stages'][stage] for r in saved])} |"
        for stage in stages
    ]
    share_default = statistics.median(shares[next(iter(VARIANTS))])
    verdict = "within" if share_default <= TARGET_SHARE else "over"
    return [
        "# A sweep trial's fixed cost: training against everything else",
        "",
        f"Command: `python benchmarks/bench_sweep.py --trials {args.trials} --steps {args.steps} "
        f"--repeats {args.repeats}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average (1 min) {load[0]:.2f} before, {load[1]:.2f} "
        "after (the benchmark's own training counts: it keeps the load near 1-2 on 2 cores).  ",
        f"One worker, {args.trials} DPO/IPO trials of {args.steps} steps (batch 16, "
        "16 evaluation prompts and pairs) on the sentiment world per repeat; the two variants "
        f"alternate {args.repeats} times, the same sampled trials in each. A figure is the "
        "median over repeats of the repeat's mean per trial, min-max of the repeats in brackets.",
        "",
        "| per trial | " + " | ".join(VARIANTS) + " |",
        "|---|---:|---:|",
        *rows,
        "| everything else / trial | "
        + " | ".join(cell(shares[label], "{:.0%}") for label in VARIANTS)
        + " |",
        "",
        f"The sweep default spends {share_default:.0%} of a trial outside training "
        f"({verdict} the {TARGET_SHARE:.0%} target); saving every trial's policy adds "
        f"{statistics.median(r['stages']['policy saved (MLflow model)'] for r in saved):.2f} s "
        "a trial. `harness sweep` trains its trials with `train.save_policy=False` unless "
        "`--set train.save_policy=true`.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error(
            "--repeats must be at least 5: a median of fewer alternating runs proves little"
        )
    from harness.commands.common import quiet_libraries

    quiet_libraries()
    clocks = stage_clocks()
    run_variant(make_sweep(1, args.steps, True), clocks)  # builds the world and disk caches
    load_before = os.getloadavg()
    results = {label: [] for label in VARIANTS}
    for i in range(args.repeats):
        for label, save in VARIANTS.items():
            results[label].append(run_variant(make_sweep(args.trials, args.steps, save), clocks))
            stages = results[label][-1]["stages"]
            print(
                f"repeat {i + 1}/{args.repeats} {label}: trial {stages['trial']:.2f} s, "
                f"else {stages['everything else']:.2f} s",
                file=sys.stderr,
            )
    params = [r["params"] for runs in results.values() for r in runs]
    assert all(p == params[0] for p in params)  # every repeat ran the same trials
    lines = report(args, results, (load_before[0], os.getloadavg()[0]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\n\nwritten to {args.out}")


if __name__ == "__main__":
    main()
