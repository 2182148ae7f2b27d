"""DPO throughput and MFU on a Qwen2.5-0.5B-architecture model: full fine-tune and LoRA, with and
without the reference log-prob cache, bf16, sequences of 1024 tokens.

The model has random weights built from the architecture's config (the GPU machines have no
internet) and a BPE tokenizer trained offline; throughput does not depend on the weights.
Writes results/benchmarks/gpu.md. `--tiny` runs the same code at toy size on CPU (the test).

MFU = model FLOPs per second / the device's peak dense bf16 FLOPs. Model FLOPs per token
(Chowdhery et al. 2022, PaLM, app. B): training 6N + 12·L·d·T (forward 2N, backward 4N: input and
weight gradients), where N counts every parameter a token passes through (the tied output head
included) and 12·L·d·T is attention's score and value products; a LoRA step skips the frozen
weights' gradients (4N + 12·L·d·T, the adapter's own FLOPs are negligible at r=16); a reference
forward adds 2N + 4·L·d·T unless its log-probs come from the cache.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch
from datasets import Dataset
from synthetic import WORDS, word_tokenizer  # benchmarks/, the script's own folder
from transformers import Qwen2Config, Qwen2ForCausalLM, TrainerCallback
from trl import DPOConfig, DPOTrainer

from harness.config.spec import LoraSpec
from harness.data.lora import lora_config

# Qwen/Qwen2.5-0.5B-Instruct's config.json (architecture only).
QWEN25_05B = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=1024,  # above the benchmark tokenizer's vocabulary
    max_position_embeddings=256,
    tie_word_embeddings=True,
)
# Peak dense bf16 tensor-core FLOP/s by device name (vendor data sheets, without sparsity).
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "L4": 121.0,
}


def pairs(n: int, seq_len: int) -> list[dict]:
    """Pairs whose prompt fills half the sequence and whose responses overflow the rest (one
    token per word), so every sequence is cut at exactly seq_len tokens."""
    rng = random.Random(0)

    def text(k: int) -> str:
        return " " + " ".join(rng.choices(WORDS, k=k))

    half = seq_len // 2
    return [
        {"prompt": text(half), "chosen": text(half + 16), "rejected": text(half + 16)}
        for _ in range(n)
    ]


class StepTimer(TrainerCallback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self.started)


def flops_per_token(config, n_params: int, seq_len: int, lora: bool, cached: bool) -> float:
    attention = config.num_hidden_layers * config.hidden_size * seq_len
    train = (4 if lora else 6) * n_params + 12 * attention
    return train + (0 if cached else 2 * n_params + 4 * attention)


def run_variant(folder, tokenizer, data, *, lora: bool, cached: bool, args, dtype) -> dict:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=args.batch,
            learning_rate=1e-6,
            bf16=dtype == torch.bfloat16,
            gradient_checkpointing=False,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=args.steps,
            max_length=args.seq_len,
            precompute_ref_log_probs=cached,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = DPOTrainer(
            model=model,
            args=config,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=lora_config(LoraSpec(r=16, alpha=32)) if lora else None,
            callbacks=[timer],
        )
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    seconds = statistics.median(timer.seconds[args.warmup :])
    tokens = args.batch * 2 * args.seq_len  # chosen and rejected, every sequence cut at seq_len
    flops = flops_per_token(model.config, n_params, args.seq_len, lora, cached) * tokens
    peak_memory = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "variant": ("LoRA r16" if lora else "full") + (", ref cache" if cached else ", ref model"),
        "s_per_step": seconds,
        "tokens_per_s": tokens / seconds,
        "tflops": flops / seconds / 1e12,
        "peak_gib": peak_memory,
        "n_params": n_params,
    }


def peak_tflops(override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "given with --peak-tflops"
    if not torch.cuda.is_available():
        return None, "no GPU"
    name = torch.cuda.get_device_name()
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return value, f"{name}, bf16 dense"
    return None, f"{name}: unknown peak, pass --peak-tflops"


def report(rows, args, device: str, peak, peak_note: str) -> str:
    lines = [
        "# DPO throughput and MFU (benchmarks/bench_gpu.py)",
        "",
        f"Model: Qwen2.5-0.5B architecture{' (tiny)' if args.tiny else ''}, {rows[0]['n_params'] / 1e6:.1f}M "
        f"parameters, random weights; {args.dtype}; batch {args.batch} pairs x 2 x {args.seq_len} tokens; "
        f"median of steps {args.warmup + 1}-{args.steps}. Device: {device}. Peak: "
        f"{'n/a' if peak is None else f'{peak:g} TFLOP/s'} ({peak_note}).",
        "",
        "| variant | s/step | tokens/s | model TFLOP/s | MFU | peak GPU memory |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        mfu = "n/a" if peak is None else f"{100 * r['tflops'] / peak:.1f}%"
        memory = "n/a" if r["peak_gib"] is None else f"{r['peak_gib']:.1f} GiB"
        lines.append(
            f"| {r['variant']} | {r['s_per_step']:.3f} | {r['tokens_per_s']:,.0f} | "
            f"{r['tflops']:.2f} | {mfu} | {memory} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="toy size on CPU (tests the script)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, help="the device's peak bf16 TFLOP/s")
    parser.add_argument(
        "--out",
        help="where to write the table (default results/benchmarks/gpu.md; "
        "with --tiny: print only)",
    )
    args = parser.parse_args(argv)
    args.steps = args.steps or (4 if args.tiny else 30)
    args.batch = args.batch or (2 if args.tiny else 8)
    args.seq_len = args.seq_len or (64 if args.tiny else 1024)
    args.warmup = 1 if args.tiny else 5
    args.dtype = "bfloat16"  # bf16 on GPU; CPU runs bf16 too (torch supports it there)
    tokenizer = word_tokenizer()
    config = Qwen2Config(
        **(TINY if args.tiny else QWEN25_05B),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    data = Dataset.from_list(pairs(args.batch * args.steps, args.seq_len))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    peak, peak_note = peak_tflops(args.peak_tflops)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        Qwen2ForCausalLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        for lora in (False, True):
            for cached in (False, True):
                rows.append(
                    run_variant(
                        folder,
                        tokenizer,
                        data,
                        lora=lora,
                        cached=cached,
                        args=args,
                        dtype=torch.bfloat16,
                    )
                )
                print(rows[-1], flush=True)
    text = report(rows, args, device, peak, peak_note)
    print(text)
    out = args.out or (None if args.tiny else "results/benchmarks/gpu.md")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)


if __name__ == "__main__":
    main()
