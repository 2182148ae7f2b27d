"""The online methods through the harness vs bare TRL running the same trainer on the same work.

For `online_dpo_gold` (OnlineDPOTrainer) and `grpo_gold` (GRPOTrainer), both on the sentiment
world's gold reward: each side trains the world's reference on the same distinct training
prompts with the same steps, batch, learning rate, seed, generation settings (temperature 1,
`max_completion_length` tokens, GRPO's group size) and logging interval. Each side runs in its
own process, alternating, `--repeats` times (at least 3); the table gives seconds per step of
`trainer.train()` (median) and the median of the paired ratios (repeat i's harness run over
repeat i's bare run), with the load average before and after. The harness's own evaluation
(step 0 and final) is outside `trainer.train()` and reported apart.

    python benchmarks/bench_online.py [--steps 10] [--batch-size 8] [--repeats 3]
writes results/benchmarks/online.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import seconds_of_calls  # benchmarks/, the script's own folder

OUT = Path("results/benchmarks/online.md")
METHODS = ("online_dpo_gold", "grpo_gold")
GROUP = 4  # GRPO samples per prompt (the harness's default 8 would leave 1 prompt per batch of 8)


def experiment(method: str, steps: int, batch_size: int):
    from harness import Experiment, TrainSpec

    method_args = {"num_generations": GROUP} if method.startswith("grpo") else {}
    return Experiment(
        method=method,
        beta=0.1,
        dataset="sentiment",
        method_args=method_args,
        train=TrainSpec(steps=steps, batch_size=batch_size, eval_every=0, save_policy=False),
    )


def bare_config(method: str, exp, out: str):
    """The trainer's config as a user would write it for the same work, CPU-safe."""
    from trl import GRPOConfig
    from trl.experimental.online_dpo import OnlineDPOConfig

    from harness.methods.catalog import resolved_args

    t, args = exp.train, resolved_args(exp)
    common = dict(
        output_dir=out,
        max_steps=t.steps,
        per_device_train_batch_size=t.batch_size,
        learning_rate=t.lr,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.log_every,
        beta=exp.beta,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
    )
    if method.startswith("grpo"):
        return GRPOConfig(
            **common,
            loss_type="grpo",
            use_bias_correction_kl=False,
            num_generations=args["num_generations"],
            max_completion_length=args["max_completion_length"],
        )
    return OnlineDPOConfig(
        **common, max_new_tokens=args["max_completion_length"], max_length=t.max_length
    )


def bare(method: str, steps: int, batch_size: int) -> dict:
    """What a user writes with TRL alone: load, the prompts, a reward function, trainer.train()."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer
    from trl.experimental.online_dpo import OnlineDPOTrainer

    from harness.data.preference import load_preference_data

    exp = experiment(method, steps, batch_size)
    data = load_preference_data(exp)
    path = data.world.reference_path
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    prompts = Dataset.from_list(
        [{"prompt": p} for p in dict.fromkeys(r["prompt"] for r in data.train)]
    )

    def gold(prompts, completions, **_):
        return data.gold(prompts, completions)

    with tempfile.TemporaryDirectory() as out:
        config = bare_config(method, exp, out)
        kwargs = dict(model=model, reward_funcs=gold, args=config, train_dataset=prompts)
        if method.startswith("grpo"):
            trainer = GRPOTrainer(**kwargs, processing_class=tokenizer)
        else:
            reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            trainer = OnlineDPOTrainer(**kwargs, ref_model=reference, processing_class=tokenizer)
        started = time.perf_counter()
        trainer.train()
        return {"train_s": time.perf_counter() - started}


def harness(method: str, steps: int, batch_size: int) -> dict:
    """The harness's run_experiment into a throwaway SQLite MLflow store."""
    import transformers

    from harness.evaluate.core import Evaluator
    from harness.infra.stores import use_tracking
    from harness.run.recipe import run_experiment

    eval_seconds = seconds_of_calls(Evaluator, "evaluate")
    train_seconds = seconds_of_calls(transformers.Trainer, "train")
    with tempfile.TemporaryDirectory() as folder:
        use_tracking(f"sqlite:///{folder}/mlflow.db", "bench")
        run_experiment(experiment(method, steps, batch_size), log=lambda _: None)
    return {"train_s": train_seconds[0], "eval_s": sum(eval_seconds)}


def child(side: str, method: str, steps: int, batch_size: int) -> None:
    from harness.commands.common import quiet_libraries

    quiet_libraries()
    result = {"bare": bare, "harness": harness}[side](method, steps, batch_size)
    print("RESULT " + json.dumps(result))


def run_child(side: str, method: str, steps: int, batch_size: int) -> dict:
    command = [sys.executable, __file__, "--child", side, "--method", method]
    command += ["--steps", str(steps), "--batch-size", str(batch_size)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[7:])


MAX_SPREAD = 0.15  # paired ratios spread wider than this: the machine was too busy to tell


def paired_ratios(runs: dict) -> list[float]:
    return [h["train_s"] / b["train_s"] for h, b in zip(runs["harness"], runs["bare"], strict=True)]


def spread_note(results: dict) -> str:
    spread = max(max(r) - min(r) for r in map(paired_ratios, results.values()))
    if spread <= MAX_SPREAD:
        return f"Paired ratios spread at most {spread:.2f}: the ratios measure the overhead."
    return (
        f"Paired ratios spread up to {spread:.2f} (over {MAX_SPREAD}): the run-to-run noise "
        "swamps any overhead, so these ratios do not measure it; rerun with more --steps or on "
        "a quieter machine."
    )


def table_row(method: str, runs: dict, steps: int) -> str:
    bare_s = [r["train_s"] / steps for r in runs["bare"]]
    harness_s = [r["train_s"] / steps for r in runs["harness"]]
    ratios = paired_ratios(runs)
    eval_s = statistics.median(r["eval_s"] for r in runs["harness"])
    return (
        f"| `{method}` | {statistics.median(bare_s):.3f} | {statistics.median(harness_s):.3f} | "
        f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) | {eval_s:.2f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["bare", "harness"])
    parser.add_argument("--method", choices=METHODS)
    args = parser.parse_args()
    from harness.methods.catalog import resolved_args

    if args.child:
        return child(args.child, args.method, args.steps, args.batch_size)
    if args.repeats < 3:
        parser.error(
            "--repeats must be at least 3: a median of fewer alternating runs proves little"
        )
    for method in METHODS:  # build the world once, for neither side's timing
        run_child("harness", method, 1, args.batch_size)
    load_before = os.getloadavg()
    results = {m: {"bare": [], "harness": []} for m in METHODS}
    for i in range(args.repeats):
        for method in METHODS:
            for side in ("bare", "harness"):
                results[method][side].append(run_child(side, method, args.steps, args.batch_size))
                print(f"repeat {i + 1}/{args.repeats} {method} {side}: {results[method][side][-1]}")
    load_after = os.getloadavg()
    command = (
        f"python benchmarks/bench_online.py --steps {args.steps} --batch-size {args.batch_size} "
        f"--repeats {args.repeats}"
    )
    exp = experiment(METHODS[0], args.steps, args.batch_size)
    lines = [
        "# Online methods: harness vs bare TRL (sentiment world, gold reward)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        "(the benchmark's own training counts: it keeps the load near 1-2 on 2 cores).  ",
        f"{args.repeats} repeats; in each, every method runs bare TRL then the harness, each in "
        "its own process. Seconds per step are `trainer.train()` over the steps, medians; a "
        "ratio is the median of the paired ratios (repeat i over repeat i's bare run), min-max "
        "in brackets.  ",
        f"Work per step: {args.batch_size} prompts x 2 samples (online DPO) or {args.batch_size} "
        f"completions in groups of {GROUP} (GRPO), up to "
        f"{resolved_args(exp)['max_completion_length']} tokens each at temperature 1, "
        f"{args.steps} steps, logging every {exp.train.log_every}.",
        "",
        "| method | bare TRL s/step | harness s/step | ratio (min-max) | harness eval (outside) |",
        "|---|---:|---:|---:|---:|",
        *(table_row(m, results[m], args.steps) for m in METHODS),
        "",
        spread_note(results),
        "",
        "The harness adds its callbacks (MLflow logging, divergence guard, evaluation schedule) "
        "and, for online DPO, the per-step sample statistics (length, tie share, tokens) and "
        "the tokenizer's own BOS rule; its reward function decodes each sample as the text "
        "continuing its prompt, where the bare one takes TRL's decoded completion.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten to {OUT}")


if __name__ == "__main__":
    main()
