"""Harness overhead: one DPO experiment through the harness vs bare TRL on the same work.

Both sides train the sentiment world's reference with DPOTrainer on the same pairs, steps,
batch size, learning rate and seed. Each side runs in its own subprocess (so each has its own
peak memory), alternating, `--repeats` times (at least 5); the median paired ratio and its spread are reported,
and a figure whose paired ratios spread more than 0.15 is refused (a busy machine). The harness's evaluation
(step 0 and final: sampling, KL, gold reward, held-out rewards) is timed on its own and
reported as its share, apart from the training overhead.

    python benchmarks/bench_overhead.py [--steps 100] [--repeats 5]
writes results/benchmarks/overhead.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import seconds_of_calls  # benchmarks/, the script's own folder

OUT = Path("results/benchmarks/overhead.md")


def experiment(steps: int, reference_cache: bool = False):
    from harness import Experiment, TrainSpec

    return Experiment(
        method="dpo",
        beta=0.1,
        dataset="sentiment",
        train=TrainSpec(
            steps=steps, eval_every=0, save_policy=False, reference_cache=reference_cache
        ),
    )


def bare(steps: int) -> dict:
    """What a user writes with TRL alone: load, build the dataset, DPOTrainer(...).train()."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from harness.data.preference import load_preference_data

    exp = experiment(steps)
    started = time.perf_counter()
    data = load_preference_data(exp)
    path = data.world.reference_path
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    t = exp.train
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out,
            max_steps=t.steps,
            per_device_train_batch_size=t.batch_size,
            learning_rate=t.lr,
            seed=t.seed,
            data_seed=t.seed,
            logging_steps=t.log_every,
            beta=exp.beta,
            max_length=t.max_length,
            bf16=False,
            gradient_checkpointing=False,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
        )
        trainer = DPOTrainer(
            model=model,
            ref_model=reference,
            args=config,
            train_dataset=Dataset.from_list(data.train),
            processing_class=tokenizer,
        )
        train_started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - train_started
    return {
        "total_s": time.perf_counter() - started,
        "train_s": train_seconds,
        "final_loss": trainer.state.log_history[-2].get("loss"),
    }


def harness(steps: int, reference_cache: bool = False) -> dict:
    """The harness's run_experiment into a throwaway SQLite MLflow store.

    Without the reference cache it does the same training work as bare TRL; with it (the
    harness default) the reference's log-probs come from disk instead of a forward per step.
    """
    import transformers

    from harness.evaluate.core import Evaluator
    from harness.infra.stores import use_tracking
    from harness.run import recipe as harness_train

    eval_seconds = seconds_of_calls(Evaluator, "evaluate")  # evaluation apart from training
    train_seconds = seconds_of_calls(transformers.Trainer, "train")
    # Where the harness's own time inside trainer.train() goes: its callbacks, by what they do.
    inside = {
        name: seconds_of_calls(owner, method)
        for name, (owner, method) in _callback_methods().items()
    }
    with tempfile.TemporaryDirectory() as folder:
        use_tracking(f"sqlite:///{folder}/mlflow.db", "bench")
        started = time.perf_counter()
        harness_train.run_experiment(experiment(steps, reference_cache), log=lambda _: None)
        total = time.perf_counter() - started
    return {
        "total_s": total,
        "train_s": train_seconds[0],
        "eval_s": sum(eval_seconds),
        **{f"in_train_{name}_s": sum(seconds) for name, seconds in inside.items()},
        **{f"in_train_{name}_calls": float(len(seconds)) for name, seconds in inside.items()},
    }


def _callback_methods() -> dict:
    from harness.methods import callbacks

    return {
        "metrics to MLflow (MetricsCallback.on_log)": (callbacks.MetricsCallback, "on_log"),
        "divergence guard, gradients (on_pre_optimizer_step)": (
            callbacks.DivergenceGuard,
            "on_pre_optimizer_step",
        ),
        "divergence guard, logged loss (on_log)": (callbacks.DivergenceGuard, "on_log"),
        "evaluation schedule (EvalCallback.on_step_end)": (callbacks.EvalCallback, "on_step_end"),
    }


def child(mode: str, steps: int) -> None:
    from harness.commands.common import quiet_libraries

    quiet_libraries()
    modes = {"bare": bare, "harness": harness, "harness_cached": lambda n: harness(n, True)}
    result = modes[mode](steps)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def run_child(mode: str, steps: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--steps", str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(
        next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:]
    )


MAX_SPREAD = 0.15  # paired ratios spread wider than this: the machine was too busy to tell


def paired_ratios(results: dict, mode: str, key: str) -> list[float]:
    """Repeat i's `mode` over repeat i's bare run: pairs run back to back share the load."""
    return [h[key] / b[key] for h, b in zip(results[mode], results["bare"], strict=True)]


def ratio_cell(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"


def where_the_time_goes(h: dict) -> list[str]:
    """The harness's callbacks' seconds inside trainer.train() (medians over the repeats)."""
    names = [
        k[len("in_train_") : -len("_s")]
        for k in h
        if k.startswith("in_train_") and k.endswith("_s")
    ]
    spent = sum(h[f"in_train_{n}_s"] for n in names)
    rows = [
        f"| {n} | {h[f'in_train_{n}_calls']:.0f} | {h[f'in_train_{n}_s']:.3f} s | "
        f"{h[f'in_train_{n}_s'] / h['train_s']:.1%} |"
        for n in names
    ]
    return [
        "Where the harness's time inside `trainer.train()` goes (its callbacks, timed by "
        "wrapping each method; medians over the harness runs):",
        "",
        "| callback | calls | seconds | share of `trainer.train()` |",
        "|---|---:|---:|---:|",
        *rows,
        f"| all of them | | {spent:.3f} s | {spent / h['train_s']:.1%} |",
        "",
        "Everything else inside `trainer.train()` is TRL's and transformers' own work, the same "
        "on both sides; a gap between the two sides beyond the callbacks' share is the "
        "machine's run-to-run noise (the spread column).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=["bare", "harness", "harness_cached"])
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.steps)
    if args.repeats < 5:
        parser.error(
            "--repeats must be at least 5: a median of fewer alternating runs proves little"
        )
    run_child("harness_cached", 2)  # build the world and reference cache once, for neither side
    load_before = os.getloadavg()
    results = {"bare": [], "harness": [], "harness_cached": []}
    for i in range(args.repeats):
        for mode in results:
            results[mode].append(run_child(mode, args.steps))
            print(f"repeat {i + 1}/{args.repeats} {mode}: {results[mode][-1]}")
    load_after = os.getloadavg()
    train = paired_ratios(results, "harness", "train_s")
    total = paired_ratios(results, "harness", "total_s")
    rss = paired_ratios(results, "harness", "peak_rss_mb")
    cached = paired_ratios(results, "harness_cached", "train_s")
    spreads = {"train": max(train) - min(train), "whole run": max(total) - min(total)}
    if max(spreads.values()) > MAX_SPREAD:
        wide = ", ".join(f"{k} {v:.3f}" for k, v in spreads.items())
        sys.exit(
            f"paired ratios spread more than {MAX_SPREAD} ({wide}; load average "
            f"{load_before[0]:.2f} before, {load_after[0]:.2f} after): the machine was too busy, "
            f"nothing written to {OUT}; rerun on a quiet machine"
        )
    med = {
        mode: {k: statistics.median(r[k] for r in rs) for k in rs[0] if isinstance(rs[0][k], float)}
        for mode, rs in results.items()
    }
    b, h = med["bare"], med["harness"]
    spec = experiment(args.steps)
    lines = [
        "# Harness overhead vs bare TRL (DPO, sentiment world)",
        "",
        f"Command: `python benchmarks/bench_overhead.py --steps {args.steps} --repeats {args.repeats}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after.  ",
        f"{args.repeats} repeats, each running bare TRL, the harness and the harness with its "
        "reference cache back to back, each in its own process. A ratio is the median of the "
        "paired ratios (repeat i over repeat i's bare run), with their min-max in brackets; "
        f"a spread over {MAX_SPREAD} is refused as a busy machine.",
        "",
        "| | bare TRL (median) | harness (median) | ratio (min-max) |",
        "|---|---:|---:|---:|",
        f"| `trainer.train()` wall time ({args.steps} steps) | {b['train_s']:.2f} s | {h['train_s']:.2f} s | {ratio_cell(train)} |",
        f"| whole run (data, models, train; harness: + eval, MLflow) | {b['total_s']:.2f} s | {h['total_s']:.2f} s | {ratio_cell(total)} |",
        f"| peak RSS | {b['peak_rss_mb']:.0f} MB | {h['peak_rss_mb']:.0f} MB | {ratio_cell(rss)} |",
        f"| `trainer.train()`, harness default (reference log-probs from the disk cache) | {b['train_s']:.2f} s | {med['harness_cached']['train_s']:.2f} s | {ratio_cell(cached)} |",
        "",
        "The harness rows run with `train.reference_cache=False`, the same work as bare TRL; "
        "the last row is the harness default (targets: training at most 1.05x, a whole run at "
        "most 1.2x).  ",
        f"Harness evaluation (step 0 and final: {spec.eval.n_prompts} samples, KL, gold reward, "
        f"{spec.eval.n_pairs} held-out pairs): {h['eval_s']:.2f} s, "
        f"{h['eval_s'] / h['total_s']:.0%} of the harness run; the rest of the whole-run "
        "difference is MLflow run set-up, params and artifacts.",
        "",
        *where_the_time_goes(h),
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {OUT}")


if __name__ == "__main__":
    main()
