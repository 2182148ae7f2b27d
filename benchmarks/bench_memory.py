"""Peak memory and seconds per step of DPO at GPT-2-small size: full fine-tune vs LoRA.

A GPT-2 with GPT-2 small's shape (124M parameters; random weights from its config, nothing
downloaded) and a BPE tokenizer trained here learn the same DPO steps on the same pairs four
ways, each in its own process so that its peak resident memory (ru_maxrss) is its own: through
the harness (`run_experiment`, which also evaluates at step 0 and at the end) and through bare
TRL (DPOTrainer alone), each as a full fine-tune (the policy plus a frozen reference copy) and
with LoRA (r=16, alpha=32, every linear layer; the reference is the base with the adapter off).
Reference log-probs are computed every step on all four (train.reference_cache=False).

    python benchmarks/bench_memory.py [--steps 5] [--batch 2] [--max-length 128]
writes results/benchmarks/memory.md. Goal: LoRA's peak memory at most 0.6x the full fine-tune's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import seconds_of_calls  # benchmarks/, the script's own folder

OUT = Path("results/benchmarks/memory.md")
VARIANTS = ("harness_full", "harness_lora", "trl_full", "trl_lora")
LORA = {"r": 16, "alpha": 32}


def build(folder: Path, pairs: int, words: int) -> None:
    """GPT-2 small's config with a tokenizer trained on the benchmark's words, and the pairs."""
    import torch
    from synthetic import WORDS, word_tokenizer  # benchmarks/, the script's own folder
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = word_tokenizer()
    torch.manual_seed(0)
    # GPT-2 small: 12 layers, 768 wide, its 50257-token embedding (the tokenizer uses the first ids).
    config = GPT2Config(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    rng = random.Random(0)
    with open(folder / "pairs.jsonl", "w") as f:
        for _ in range(pairs):
            prompt, chosen, rejected = (" ".join(rng.choices(WORDS, k=words)) for _ in range(3))
            f.write(
                json.dumps({"prompt": prompt, "chosen": " " + chosen, "rejected": " " + rejected})
            )
            f.write("\n")


def experiment(folder: Path, args, lora: bool):
    from harness import EvalSpec, Experiment, LoraSpec, ModelSpec, TrainSpec

    return Experiment(
        method="dpo",
        beta=0.1,
        dataset=str(folder / "pairs.jsonl"),
        model=ModelSpec(
            name_or_path=str(folder / "model"), lora=LoraSpec(**LORA) if lora else None
        ),
        train=TrainSpec(
            steps=args.steps,
            batch_size=args.batch,
            max_length=args.max_length,
            lr=1e-5,
            eval_every=0,
            log_every=1,
            reference_cache=False,
            save_policy=False,
        ),
        eval=EvalSpec(n_prompts=4, n_pairs=4, max_new_tokens=8, n_table_rows=2),
    )


def harness(folder: Path, args, lora: bool) -> float:
    import transformers

    from harness.infra.stores import use_tracking
    from harness.run.recipe import run_experiment

    seconds = seconds_of_calls(transformers.Trainer, "train")
    use_tracking(f"sqlite:///{folder}/mlflow-{os.getpid()}.db", "bench")
    run_experiment(experiment(folder, args, lora), log=lambda _: None)
    return seconds[0]


def bare(folder: Path, args, lora: bool) -> float:
    """What a user writes with TRL and PEFT alone, with the harness's settings."""
    import transformers
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    seconds = seconds_of_calls(transformers.Trainer, "train")
    path = folder / "model"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    reference = None if lora else AutoModelForCausalLM.from_pretrained(path)
    rows = [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines()]
    peft = LoraConfig(
        r=LORA["r"], lora_alpha=LORA["alpha"], target_modules="all-linear", task_type="CAUSAL_LM"
    )
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch,
            learning_rate=1e-5,
            max_length=args.max_length,
            logging_steps=1,
            bf16=False,
            gradient_checkpointing=False,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
        )
        DPOTrainer(
            model=model,
            ref_model=reference,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft if lora else None,
        ).train()
    return seconds[0]


def child(variant: str, folder: Path, args) -> None:
    from harness.commands.common import quiet_libraries

    quiet_libraries()
    side, kind = variant.split("_")
    train_s = (harness if side == "harness" else bare)(folder, args, kind == "lora")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({"s_per_step": train_s / args.steps, "peak_rss_mb": peak}))


def run_child(variant: str, folder: Path, args) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--folder", str(folder)]
    command += ["--steps", str(args.steps), "--batch", str(args.batch)]
    out = subprocess.run(
        [*command, "--max-length", str(args.max_length)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))[7:])


def report(results: dict, args, n_params: int) -> str:
    r = results
    ratio = {
        side: r[f"{side}_lora"]["peak_rss_mb"] / r[f"{side}_full"]["peak_rss_mb"]
        for side in ("harness", "trl")
    }
    rows = [
        f"| {kind} | {r[f'harness_{kind}']['peak_rss_mb']:.0f} MB | {r[f'trl_{kind}']['peak_rss_mb']:.0f} MB "
        f"| {r[f'harness_{kind}']['peak_rss_mb'] / r[f'trl_{kind}']['peak_rss_mb']:.2f} "
        f"| {r[f'harness_{kind}']['s_per_step']:.2f} s | {r[f'trl_{kind}']['s_per_step']:.2f} s |"
        for kind in ("full", "lora")
    ]
    goal = "met" if ratio["harness"] <= 0.6 else "NOT met"
    return (
        "\n".join(
            [
                "# Peak memory of DPO: full fine-tune vs LoRA (GPT-2 small size)",
                "",
                f"Command: `python benchmarks/bench_memory.py --steps {args.steps} --batch {args.batch} "
                f"--max-length {args.max_length}`  ",
                f"Model: GPT-2 small's config, {n_params / 1e6:.1f}M parameters, random weights, fp32; "
                f"LoRA r={LORA['r']}, alpha={LORA['alpha']}, all linear layers. {args.steps} DPO steps of "
                f"{args.batch} pairs, {args.max_length} tokens per sequence. Machine: {platform.machine()}, "
                f"{os.cpu_count()} cores (shared with other jobs while measured: the seconds are noisy, "
                "the memory is not). Each variant in its own process; peak RSS = ru_maxrss.",
                "",
                "| | harness peak RSS | bare TRL peak RSS | harness / TRL | harness s/step | TRL s/step |",
                "|---|---:|---:|---:|---:|---:|",
                *rows,
                "",
                f"LoRA / full peak memory: **{ratio['harness']:.2f}** through the harness, "
                f"{ratio['trl']:.2f} with bare TRL (goal: at most 0.6, {goal}).  ",
                "Full fine-tune: the policy, its gradients and two AdamW moments, and a frozen reference "
                "copy (the harness holds it for its evaluation and TRL uses the same object). LoRA: one "
                "copy of the weights, gradients and optimizer state for the adapter only, the reference "
                "being the base with the adapter switched off. The harness's extra memory over bare "
                "TRL is its step-0 and final evaluation (sampling, held-out pairs) and MLflow.",
            ]
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--child", choices=VARIANTS)
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if args.child:
        return child(args.child, args.folder, args)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        folder = Path(tmp)
        build(folder, pairs=64, words=args.max_length // 2)
        results = {}
        for variant in VARIANTS:
            results[variant] = run_child(variant, folder, args)
            print(f"{variant}: {results[variant]}", flush=True)
        n_params = 124_439_808  # GPT2Config() with its 50257-token vocabulary
    text = report(results, args, n_params)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
