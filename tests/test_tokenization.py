"""One tokenization: a pair reaches every method's trainer, and the harness's scorer and sampler,
as the same token ids (TRL's ORPO and CPO would otherwise prepend a BOS no other method sees)."""

from __future__ import annotations

import pytest
from trl.experimental.online_dpo import OnlineDPOTrainer

from harness.data.sequences import Sampling, encode, sample_completions, tokenize_completion
from harness.methods.catalog import METHODS
from tests import tiny

# rloo's builder is rloo_gold's (trainers.rloo_trainer) with a reward model trained on the pairs
# as its reward; building it would train that model, and its prompts are tokenized identically.
# The same holds for the other on-policy methods and their gold variants.
SAME_DATA_PATH = {"rloo": "rloo_gold", "online_dpo": "online_dpo_gold", "grpo": "grpo_gold"}


def _split(ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) of a sequence whose prompt positions are labelled -100."""
    n = sum(label == -100 for label in labels)
    return list(ids[:n]), list(ids[n:])


def trainer_ids(trainer, row: dict) -> tuple[list[int], list[int] | None]:
    """The (prompt ids, chosen completion ids) a trainer prepared for `row`; None for on-policy
    trainers, which only tokenize the prompt."""
    data = trainer.train_dataset
    columns = set(data.column_names)
    if {"prompt_ids", "chosen_ids"} <= columns:  # DPOTrainer
        first = data[0]
        return first["prompt_ids"], first["chosen_ids"]
    if {"prompt_ids", "completion_ids", "label"} <= columns:  # KTOTrainer: unpaired, shuffled
        (match,) = [r for r in data if r["label"]]  # one pair: its chosen row
        return match["prompt_ids"], match["completion_ids"]
    if "chosen_input_ids" in columns:  # ORPO and CPO
        return _split(data[0]["chosen_input_ids"], data[0]["chosen_labels"])
    if "completion_mask" in columns or "labels" in columns:  # SFTTrainer (prompt, completion)
        first = data[0]
        if "completion_mask" in columns:
            n = first["completion_mask"].index(1)
            return first["input_ids"][:n], first["input_ids"][n:]
        return _split(first["input_ids"], first["labels"])
    if isinstance(trainer, OnlineDPOTrainer):  # tokenizes each step's prompts as it samples
        prompt_ids, *_ = trainer._generate(trainer.model, [row["prompt"]])
        return prompt_ids[0].tolist(), None
    prompt_ids, *_ = trainer._tokenize_prompts([row["prompt"]])  # RLOOTrainer, GRPOTrainer
    return prompt_ids[0], None


@pytest.mark.parametrize("bos_rule", [False, True], ids=["world_tokenizer", "llama_like_bos"])
def test_every_method_and_the_harness_see_the_same_token_ids(bos_rule, tmp_path):
    tokenizer = tiny.word_tokenizer(bos_rule=bos_rule)
    rows = tiny.pairs(1)
    row = rows[0]
    expected = tokenize_completion(tokenizer, row["prompt"], row["chosen"])
    assert (expected[0][:1] == [tokenizer.bos_token_id]) == bos_rule
    assert expected[1][-1] == tokenizer.eos_token_id

    seen = {}
    for name, method in METHODS.items():
        if not method.trains:  # best-of-n samples the reference with the harness's own sampler
            continue
        builder = METHODS.get(SAME_DATA_PATH.get(name, name)).build
        settings = dict(method.settings) | {"num_generations": 2}
        job = tiny.job(tokenizer, rows, tmp_path / name, beta=0.1, method_args=settings)
        job.args["per_device_train_batch_size"] = 2  # RLOO: one group of 2 samples per step
        job.data.gold = lambda prompts, completions: [0.0] * len(completions)
        seen[name] = trainer_ids(builder(job), row)
    for name, (prompt_ids, completion_ids) in seen.items():
        assert prompt_ids == expected[0], f"{name}: prompt ids differ"
        assert completion_ids in (None, expected[1]), f"{name}: completion ids differ"
    assert sum(c is not None for _, c in seen.values()) >= 9  # every offline method compared

    model = tiny.tiny_model(tokenizer, seed=0)
    sampled = sample_completions(model, tokenizer, [row["prompt"]], Sampling(max_new_tokens=2))
    assert sampled.prompt_ids == [expected[0]] == [encode(tokenizer, row["prompt"])]
