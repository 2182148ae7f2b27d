"""A tiny word tokenizer, GPT-2 and preference pairs built in memory (well under a second), for
tests that need real TRL trainers and token ids but no built world."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import processors

from harness.data.models import build_tiny_gpt2, load_causal_lm
from harness.data.preference import PAIRED, PreferenceData
from harness.data.worlds.sentiment import train_word_tokenizer
from harness.infra.devices import training_arguments
from harness.methods.trainers import TrainingJob

WORDS = [
    "the",
    "movie",
    "plot",
    "was",
    "is",
    "great",
    "bad",
    "good",
    "awful",
    "really",
    "very",
    "acting",
]


def word_tokenizer(bos_rule: bool = False):
    """The sentiment world's kind of tokenizer (BOS `<s>` defined, never added), or, with
    `bos_rule`, one that adds BOS to every text as Llama's tokenizers do."""
    texts = [" ".join(random.Random(i).choices(WORDS, k=6)) for i in range(100)]
    tokenizer = train_word_tokenizer(texts)
    if bos_rule:
        bos = (tokenizer.bos_token, tokenizer.bos_token_id)
        tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos[0]} $A", special_tokens=[bos]
        )
    return tokenizer


def pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choices(WORDS, k=k))

    return [
        {
            "prompt": words(3),
            "chosen": " " + words(rng.randint(2, 5)),
            "rejected": " " + words(rng.randint(2, 5)),
        }
        for _ in range(n)
    ]


def tiny_model(tokenizer, seed: int):
    model = build_tiny_gpt2(tokenizer, n_embd=32, n_layer=2, n_head=2, seed=seed)
    return model.eval()  # no dropout: a loss computed twice must agree


def job(tokenizer, rows: list[dict], out_dir, *, beta: float, method_args: dict) -> TrainingJob:
    """A TrainingJob over `rows`: policy and reference are different random tiny models, the
    policy loaded from a folder as the harness loads it (RLOO copies its reference from there)."""
    tiny_model(tokenizer, seed=0).save_pretrained(Path(out_dir) / "policy")
    return TrainingJob(
        policy=load_causal_lm(Path(out_dir) / "policy").eval(),
        reference=tiny_model(tokenizer, seed=1),
        tokenizer=tokenizer,
        data=PreferenceData(
            source="tiny", format=PAIRED, train=rows, eval_pairs=[], eval_prompts=[]
        ),
        beta=beta,
        method_args=method_args,
        max_length=64,
        seed=0,
        model_source="tiny",
        tracked=None,
        reference_cache=False,
        args=training_arguments(
            str(out_dir),
            max_steps=1,
            per_device_train_batch_size=len(rows),
            remove_unused_columns=False,
        ),
    )


def completion_logps(model, tokenizer, prompt_ids, completion_ids) -> torch.Tensor:
    """sum_t log pi(y_t | x, y_<t) of one completion, with gradients (the tests' own forward)."""
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
    logps = model(ids).logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None]).squeeze(1)
    return logps[len(prompt_ids) - 1 :].sum()
