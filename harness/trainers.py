"""Builders: a TrainingJob -> the TRL trainer that runs a method, on data in that trainer's format.

One builder per TRL trainer, not per method: the registry (harness.methods) binds each method
to a builder and its options. Every builder takes the CPU-safe `TrainingJob.trainer_args()`,
the experiment's `beta` in the trainer's own meaning (see each method's `beta_means`) and the
method settings (`job.method_args`, paper defaults filled in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.data import PAIRED, PreferenceData
from harness.sequences import continuation_text

if TYPE_CHECKING:
    from harness.train import TrainingJob

Builder = Callable[["TrainingJob"], Any]


# ---- data in each trainer's format -------------------------------------------------------------


def explicit_prompts(data: PreferenceData) -> list[dict]:
    """Training rows with a prompt: an implicit one (pairs whose chosen and rejected both start
    with it, as in Anthropic HH) is split off by TRL's maybe_extract_prompt, as TRL's paired
    trainers do themselves."""
    from trl import maybe_extract_prompt

    return [maybe_extract_prompt(r) for r in data.train] if data.format == PAIRED else data.train


def unpaired_rows(data: PreferenceData, seed: int):
    """{prompt, completion, label} rows for KTO, shuffled with the experiment's seed.

    TRL unpairs paired data into all chosen rows followed by all rejected rows, and KTOTrainer
    samples sequentially (its KL estimate pairs each row with its neighbours in a fixed-order
    batch): without this shuffle, the first half of training would see only desirable examples.
    Native unpaired rows are shuffled too, as every other trainer's random sampler would.
    """
    from datasets import Dataset
    from trl import unpair_preference_dataset

    rows = Dataset.from_list(explicit_prompts(data))
    if data.format == PAIRED:
        rows = unpair_preference_dataset(rows)
    return rows.shuffle(seed=seed)


def chosen_rows(data: PreferenceData):
    """{prompt, completion} rows of the preferred responses: the preferred-FT baseline's data."""
    from datasets import Dataset

    if data.format == PAIRED:
        rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in explicit_prompts(data)]
    else:  # unpaired: the desirable completions
        rows = [
            {"prompt": r["prompt"], "completion": r["completion"]} for r in data.train if r["label"]
        ]
    return Dataset.from_list(rows)


def prompt_rows(data: PreferenceData):
    """{prompt} rows, each distinct training prompt once, for on-policy sampling."""
    from datasets import Dataset

    prompts = {repr(r["prompt"]): r["prompt"] for r in explicit_prompts(data)}  # chats are lists
    return Dataset.from_list([{"prompt": p} for p in prompts.values()])


# ---- builders ----------------------------------------------------------------------------------


def dpo_trainer(loss_type: str) -> Builder:
    """DPOTrainer with one of its losses; `label_smoothing` from the settings where the method has it."""

    def build(job: TrainingJob):
        from trl import DPOConfig, DPOTrainer

        from harness.refcache import with_reference_cache

        cached = job.exp.train.reference_cache
        config = DPOConfig(
            **job.trainer_args(),
            beta=job.exp.beta,
            loss_type=[loss_type],
            label_smoothing=job.method_args.get("label_smoothing", 0.0),
            max_length=job.exp.train.max_length,
            precompute_ref_log_probs=cached,
        )
        trainer_class = with_reference_cache(DPOTrainer) if cached else DPOTrainer
        return trainer_class(
            model=job.policy,
            ref_model=job.reference,
            args=config,
            train_dataset=job.train_dataset(),
            processing_class=job.tokenizer,
            callbacks=job.callbacks,
        )

    return build


def kto_trainer(job: TrainingJob):
    from trl import KTOConfig, KTOTrainer

    args = job.method_args
    config = KTOConfig(
        **job.trainer_args(),
        beta=job.exp.beta,
        desirable_weight=args["desirable_weight"],
        undesirable_weight=args["undesirable_weight"],
        max_length=job.exp.train.max_length,
    )
    return KTOTrainer(
        model=job.policy,
        ref_model=job.reference,
        args=config,
        train_dataset=unpaired_rows(job.data, job.exp.train.seed),
        processing_class=job.tokenizer,
        callbacks=job.callbacks,
    )


def orpo_trainer(job: TrainingJob):
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    config = ORPOConfig(
        **job.trainer_args(), beta=job.exp.beta, max_length=job.exp.train.max_length
    )
    return ORPOTrainer(
        model=job.policy,
        args=config,
        train_dataset=job.train_dataset(),
        processing_class=job.tokenizer,
        callbacks=job.callbacks,
    )


def simpo_trainer(job: TrainingJob):
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    config = CPOConfig(
        **job.trainer_args(),
        loss_type="simpo",
        cpo_alpha=0.0,  # no behaviour-cloning term: pure SimPO, not CPO-SimPO
        beta=job.exp.beta,
        simpo_gamma=job.method_args["gamma"],
        max_length=job.exp.train.max_length,
    )
    return CPOTrainer(
        model=job.policy,
        args=config,
        train_dataset=job.train_dataset(),
        processing_class=job.tokenizer,
        callbacks=job.callbacks,
    )


def sft_trainer(job: TrainingJob):
    """SFTTrainer on prompt + preferred completion, loss on the completion tokens only."""
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(**job.trainer_args(), max_length=job.exp.train.max_length)
    return SFTTrainer(
        model=job.policy,
        args=config,
        train_dataset=chosen_rows(job.data),
        processing_class=job.tokenizer,
        callbacks=job.callbacks,
    )


def rloo_trainer(reward: Callable[[TrainingJob], Callable]) -> Builder:
    """RLOOTrainer maximising reward - beta * KL(pi || pi_ref), the KL summed over the sequence.

    `reward(job)` returns TRL's reward function; its __name__ names the logged reward.
    """

    def build(job: TrainingJob):
        from trl import RLOOConfig, RLOOTrainer

        args = job.method_args
        config = RLOOConfig(
            **job.trainer_args(),
            beta=job.exp.beta,
            num_generations=args["num_generations"],
            max_completion_length=args["max_completion_length"],
            temperature=1.0,  # samples from pi itself, so the KL penalty is an unbiased estimate
            disable_dropout=True,  # the log-probs of the samples must be those they were drawn with
        )
        # RLOOTrainer loads its own frozen copy of the policy as pi_ref (from the policy's path).
        return RLOOTrainer(
            model=job.policy,
            reward_funcs=reward(job),
            args=config,
            train_dataset=prompt_rows(job.data),
            processing_class=job.tokenizer,
            callbacks=job.callbacks,
        )

    return build


def continuations(tokenizer, prompts: list, completions: list, completion_ids: list) -> list:
    """Each sampled completion as the text that continues its prompt, as in the data's pairs.

    TRL decodes the completion tokens alone; harness.sequences.continuation_text keeps the
    space between prompt and completion. Chat prompts (message lists) pass through unchanged.
    """
    out = []
    for prompt, text, ids in zip(prompts, completions, completion_ids, strict=True):
        if isinstance(prompt, str):
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            text = continuation_text(tokenizer, prompt_ids, ids)
        out.append(text)
    return out


def gold_reward(job: TrainingJob) -> Callable:
    """The world's gold reward of each sampled completion."""
    score, tokenizer = job.data.gold, job.tokenizer

    def gold(prompts, completions, completion_ids, **_):
        return score(prompts, continuations(tokenizer, prompts, completions, completion_ids))

    return gold


def learned_reward(job: TrainingJob) -> Callable:
    """A reward model trained with RewardTrainer on the experiment's own preference pairs.

    Its backbone is the experiment's model (the world's reference model by default), as RLHF
    initialises the reward model from the SFT model. Its held-out pair accuracy is logged as
    `rm/accuracy`, so a weak judge shows beside the run it trained.
    """
    import mlflow

    from harness.evaluate.reward_model import reward_model_for

    model = reward_model_for(job.data, backbone=job.exp.model.name_or_path, seed=job.exp.train.seed)
    mlflow.log_metric("rm/accuracy", model.accuracy, step=0)
    tokenizer = job.tokenizer

    def reward_model(prompts, completions, completion_ids, **_):
        return model.score(prompts, continuations(tokenizer, prompts, completions, completion_ids))

    return reward_model
