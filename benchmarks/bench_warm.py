"""Warm against cold sweep workers where the warm one is meant to help: a hub-sized model.

The model is GPT-2 small's shape (124M parameters, random weights from its config, nothing
downloaded) with a tokenizer trained here, saved once under results/cache/bench_warm/ and
loaded by path, as a hub model is; the data is a JSONL file of synthetic pairs beside it
(bench_memory.build). A cold worker (`warm=False`) loads the reference and tokenizer, scores
the held-out pairs under the reference, samples the reference for the step-0 evaluation and
reads the reference log-probs from disk for every trial; a warm worker (what `harness sweep`
runs) keeps them in memory from one trial to the next. The same DPO/IPO trials (same sampler
seed) run with each worker, alternated `--repeats` times, on fresh Optuna and MLflow stores,
after one untimed trial that builds the model folder and the reference log-prob cache.
A repeat's ratio is the cold worker's wall time over the warm one's (= the warm worker's
trials per hour over the cold one's); the figure is the median ratio with its min-max.

    python benchmarks/bench_warm.py [--trials 4] [--steps 10] [--repeats 5]
writes results/benchmarks/warm.md. Fewer than 5 repeats (a check that it runs) only with
--out elsewhere. The README's rule: a warm worker under 1.3x is removed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

OUT = Path("results/benchmarks/warm.md")
THRESHOLD = 1.3  # the warm worker stays only if it runs at least this many times the trials/hour
DATA = {"pairs": 96, "words": 12}  # prompt, chosen and rejected of 12 words each


def model_folder() -> Path:
    """The 124M model and the pairs, built once (verified cache folder, harness.infra.cache)."""
    from bench_memory import build  # benchmarks/, the script's own folder

    from harness.infra.cache import cached_dir

    settings = {"model": "GPT2Config() with the bench tokenizer", "seed": 0, **DATA}
    return cached_dir("bench_warm", settings, lambda out: build(out, **DATA))


def make_sweep(folder: Path, trials: int, steps: int):
    from harness import Choice, EvalSpec, Experiment, LogUniform, ModelSpec, Sweep, TrainSpec
    from harness.config.metrics import EVAL_PAIR_ACCURACY

    base = Experiment(
        method="dpo",
        beta=0.1,
        dataset=str(folder / "pairs.jsonl"),
        model=ModelSpec(name_or_path=str(folder / "model")),
        train=TrainSpec(
            steps=steps, batch_size=4, max_length=64, lr=1e-5, eval_every=0, save_policy=False
        ),
        eval=EvalSpec(n_prompts=16, n_pairs=16, max_new_tokens=16),
    )
    return Sweep(
        name="bench-warm",
        base=base,
        n_trials=trials,
        pruner="none",
        objective=EVAL_PAIR_ACCURACY,  # a file dataset has no gold reward
        space={"method": Choice(["dpo", "ipo"]), "beta": LogUniform(0.05, 1.0)},
    )


def run_worker(sweep, warm: bool) -> dict:
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
        assert all(t.state.name == "COMPLETE" for t in trials), [t.state for t in trials]
    return {"wall_s": wall, "params": [t.params for t in trials]}


def report(args, walls: dict, load: tuple[float, float]) -> list[str]:
    ratios = [c / w for c, w in zip(walls[False], walls[True], strict=True)]
    ratio = statistics.median(ratios)
    rates = {warm: 3600 * args.trials / statistics.median(w) for warm, w in walls.items()}
    verdict = "keeps" if ratio >= THRESHOLD else "does not reach"
    return [
        "# Sweep throughput at GPT-2 small size: cold vs warm workers",
        "",
        f"Command: `python benchmarks/bench_warm.py --trials {args.trials} --steps {args.steps} "
        f"--repeats {args.repeats}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; load average (1 min) {load[0]:.2f} before, {load[1]:.2f} "
        "after.  ",
        f"Model: GPT-2 small's config (124M parameters, random weights), loaded by path; "
        f"{args.trials} DPO/IPO trials of {args.steps} steps (batch 4, 64 tokens), 16 evaluation "
        "prompts and pairs, per worker and repeat, the same trials for both.",
        "",
        "| worker | wall time, median (min-max) | trials per hour |",
        "|---|---:|---:|",
        *(
            f"| {'warm' if warm else 'cold'} | {statistics.median(w):.1f} s "
            f"({min(w):.1f}-{max(w):.1f}) | {rates[warm]:.0f} |"
            for warm, w in walls.items()
        ),
        "",
        f"The warm worker runs **{ratio:.2f}x** ({min(ratios):.2f}-{max(ratios):.2f}) the trials "
        f"per hour of the cold one: it {verdict} the {THRESHOLD}x that keeps it.",
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.repeats < 5 and args.out.resolve() == OUT.resolve():
        parser.error(f"--repeats must be at least 5 to write {OUT} (a check: --out elsewhere)")
    from harness.commands.common import quiet_libraries

    quiet_libraries()
    folder = model_folder()
    run_worker(make_sweep(folder, 1, args.steps), warm=False)  # the reference log-prob cache
    sweep = make_sweep(folder, args.trials, args.steps)
    load_before = os.getloadavg()
    walls, params = {False: [], True: []}, []
    for i in range(args.repeats):
        for warm in (False, True):
            result = run_worker(sweep, warm)
            walls[warm].append(result["wall_s"])
            params.append(result["params"])
            print(
                f"repeat {i + 1}/{args.repeats} warm={warm}: {result['wall_s']:.1f} s",
                file=sys.stderr,
            )
    assert all(p == params[0] for p in params)  # both workers ran the same trials
    lines = report(args, walls, (load_before[0], os.getloadavg()[0]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\n\nwritten to {args.out}")


if __name__ == "__main__":
    main()
