"""Builders: a TrainingJob -> the TRL trainer that runs a method, on data in that trainer's format.

One builder per TRL trainer, not per method: the registry (harness.methods.catalog) binds each method
to a builder and its options. Every builder takes the CPU-safe `TrainingJob.args`, the
experiment's `beta` in the trainer's own meaning (see each method's `beta_means`) and the
method settings (`job.method_args`, paper defaults filled in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import (
    DPOConfig,
    DPOTrainer,
    GRPOConfig,
    GRPOTrainer,
    KTOConfig,
    KTOTrainer,
    RLOOConfig,
    RLOOTrainer,
    SFTConfig,
    SFTTrainer,
    maybe_extract_prompt,
    unpair_preference_dataset,
)
from trl.experimental.cpo import CPOConfig, CPOTrainer
from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from harness.config.metrics import RM_ACCURACY
from harness.data.preference import PAIRED, PreferenceData
from harness.data.sequences import continuation_text, encode
from harness.infra.tracked import TrackedRun
from harness.methods.callbacks import MetricsCallback
from harness.methods.losses import conservative_dpo_mixture
from harness.methods.refcache import with_reference_cache
from harness.methods.reward_model import reward_model_for


@dataclass
class TrainingJob:
    """Everything a method's builder needs: the models, the data and the run's settings."""

    policy: Any
    reference: Any | None  # None for methods whose training does not use pi_ref
    tokenizer: Any
    data: PreferenceData
    beta: float
    method_args: dict[str, Any]  # the method's settings, paper defaults filled in
    max_length: int  # prompt + completion tokens
    seed: int
    model_source: str  # the experiment's model.name_or_path (the learned reward's backbone)
    tracked: TrackedRun | None  # the run to log into (None: nowhere, the other processes)
    reference_cache: (
        bool  # DPO family: reference log-probs cached on disk (harness.methods.refcache)
    )
    args: dict[str, Any]  # TrainingArguments shared by every method, CPU-safe
    peft_config: Any | None = None  # LoRA (peft.LoraConfig): TRL wraps the policy with it
    callbacks: list[TrainerCallback] = field(default_factory=list)

    def train_dataset(self) -> Dataset:
        return Dataset.from_list(self.data.train)


Builder = Callable[[TrainingJob], Any]


# ---- data in each trainer's format -------------------------------------------------------------


def explicit_prompts(data: PreferenceData) -> list[dict]:
    """Training rows with a prompt: an implicit one (pairs whose chosen and rejected both start
    with it, as in Anthropic HH) is split off by TRL's maybe_extract_prompt, as TRL's paired
    trainers do themselves."""
    return [maybe_extract_prompt(r) for r in data.train] if data.format == PAIRED else data.train


def unpaired_rows(data: PreferenceData, seed: int):
    """{prompt, completion, label} rows for KTO, shuffled with the experiment's seed.

    TRL unpairs paired data into all chosen rows followed by all rejected rows, and KTOTrainer
    samples sequentially (its KL estimate pairs each row with its neighbours in a fixed-order
    batch): without this shuffle, the first half of training would see only desirable examples.
    Native unpaired rows are shuffled too, as every other trainer's random sampler would.
    """
    rows = Dataset.from_list(explicit_prompts(data))
    if data.format == PAIRED:
        rows = unpair_preference_dataset(rows)
    return rows.shuffle(seed=seed)


def chosen_rows(data: PreferenceData):
    """{prompt, completion} rows of the preferred responses: the preferred-FT baseline's data."""
    if data.format == PAIRED:
        rows = [{"prompt": r["prompt"], "completion": r["chosen"]} for r in explicit_prompts(data)]
    else:  # unpaired: the desirable completions
        rows = [
            {"prompt": r["prompt"], "completion": r["completion"]} for r in data.train if r["label"]
        ]
    return Dataset.from_list(rows)


def prompt_rows(data: PreferenceData):
    """{prompt} rows, each distinct training prompt once, for on-policy sampling."""
    prompts = {repr(r["prompt"]): r["prompt"] for r in explicit_prompts(data)}  # chats are lists
    return Dataset.from_list([{"prompt": p} for p in prompts.values()])


# ---- builders ----------------------------------------------------------------------------------


def dpo_trainer(loss_type: str) -> Builder:
    """DPOTrainer with one of its losses; `label_smoothing` from the settings where the method has it."""
    return _dpo_family(lambda settings: ([loss_type], None))


def conservative_dpo_trainer() -> Builder:
    """DPOTrainer computing conservative DPO (Mitchell 2023) with flip rate `label_smoothing`.

    TRL has no cDPO loss (its `sigmoid` ignores label smoothing, its `robust` is rDPO) and no
    per-loss hook; cDPO is exactly a weighted sum of its `sigmoid` and `robust` losses
    (harness.methods.losses.conservative_dpo_mixture), which TRL computes, logs and caches as its own.
    """
    return _dpo_family(lambda settings: conservative_dpo_mixture(settings["label_smoothing"]))


def _dpo_family(losses: Callable[[dict], tuple[list[str], list[float] | None]]) -> Builder:
    """A DPOTrainer builder; `losses(method settings)` -> (TRL loss_type list, loss_weights)."""

    def build(job: TrainingJob):
        cached = job.reference_cache
        loss_type, loss_weights = losses(job.method_args)
        config = DPOConfig(
            **job.args,
            beta=job.beta,
            loss_type=loss_type,
            loss_weights=loss_weights,
            label_smoothing=job.method_args.get("label_smoothing", 0.0),
            max_length=job.max_length,
            precompute_ref_log_probs=cached,
        )
        trainer_class = with_reference_cache(DPOTrainer, job.tracked) if cached else DPOTrainer
        return trainer_class(
            model=job.policy,
            ref_model=job.reference,
            args=config,
            train_dataset=job.train_dataset(),
            processing_class=job.tokenizer,
            peft_config=job.peft_config,
            callbacks=job.callbacks,
        )

    return build


def kto_trainer(job: TrainingJob):
    args = job.method_args
    config = KTOConfig(
        **job.args,
        beta=job.beta,
        desirable_weight=args["desirable_weight"],
        undesirable_weight=args["undesirable_weight"],
        max_length=job.max_length,
    )
    return KTOTrainer(
        model=job.policy,
        ref_model=job.reference,
        args=config,
        train_dataset=unpaired_rows(job.data, job.seed),
        processing_class=job.tokenizer,
        peft_config=job.peft_config,
        callbacks=job.callbacks,
    )


class _TokenizedLikeDPO:
    """For TRL's ORPO and CPO trainers: tokenize as every other trainer and the harness do.

    Their `tokenize_row` prepends BOS to every prompt whenever the tokenizer has one
    (trl.experimental.utils.add_bos_token_if_needed), while DPO, KTO, SFT, RLOO and the
    harness's measurements use the tokenizer's own rule (harness.data.sequences.encode), which for
    the built-in worlds adds none. Where that rule adds no BOS, the one TRL added is dropped
    from the prompt, both sequences and their labels.

    Private TRL API, pinned (tests/test_pinned_internals.py fails naming the trl version if it
    changes): the experimental trainers take raw text only and tokenize it in `__init__` with
    `self.tokenize_row`; no config option or public hook sets their BOS rule.
    """

    def tokenize_row(self, feature, model=None):
        row = super().tokenize_row(feature, model)
        bos = self.processing_class.bos_token_id
        added = bos is not None and row["prompt_input_ids"][:1] == [bos]
        if not added or encode(self.processing_class, feature["prompt"])[:1] == [bos]:
            return row
        keys = ["prompt_input_ids", "prompt_attention_mask"] + [
            f"{side}_{key}"
            for side in ("chosen", "rejected")
            for key in ("input_ids", "attention_mask", "labels")
        ]
        return row | {key: row[key][1:] for key in keys}


class PaperORPOTrainer(_TokenizedLikeDPO, ORPOTrainer):
    """TRL's ORPOTrainer, its prompts tokenized as DPOTrainer tokenizes them and its SFT term
    the ORPO paper's (Hong et al. 2024, eq. 2): L_SFT = -(1/m) sum_t log pi(y_t | x, y_<t) over
    the m completion tokens of the chosen response, averaged over pairs. TRL's own averages over
    prompt and completion tokens (its labels are every attended token).

    TRL's per-pair chosen log-prob (its `average_log_prob=True`, completion labels only, the same
    P_theta the odds ratio uses) is that mean, so L_SFT = -mean(chosen logps); everything else,
    the odds-ratio term included, is TRL's. Private TRL API, pinned like `tokenize_row`
    (tests/test_pinned_internals.py): `concatenated_forward` returns the chosen NLL fifth.
    """

    def concatenated_forward(self, model, batch):
        chosen_logps, *rest = super().concatenated_forward(model, batch)
        rest[3] = -chosen_logps.mean()  # in place of TRL's prompt-and-completion NLL
        return (chosen_logps, *rest)


class CPOTrainerTokenizedLikeDPO(_TokenizedLikeDPO, CPOTrainer):
    """TRL's CPOTrainer (SimPO), its prompts tokenized as DPOTrainer tokenizes them."""


def orpo_trainer(job: TrainingJob):
    config = ORPOConfig(**job.args, beta=job.beta, max_length=job.max_length)
    return PaperORPOTrainer(
        model=job.policy,
        args=config,
        train_dataset=job.train_dataset(),
        processing_class=job.tokenizer,
        peft_config=job.peft_config,
        callbacks=job.callbacks,
    )


def simpo_gamma(beta: float, settings: dict) -> float:
    """SimPO's target reward margin: `gamma` when given, else gamma_beta_ratio * beta (the paper
    tunes gamma/beta, 0.5 in most of its settings, so gamma scales with the strength)."""
    gamma = settings["gamma"]
    return settings["gamma_beta_ratio"] * beta if gamma is None else gamma


def simpo_trainer(job: TrainingJob):
    config = CPOConfig(
        **job.args,
        loss_type="simpo",
        cpo_alpha=0.0,  # no behaviour-cloning term: pure SimPO, not CPO-SimPO
        beta=job.beta,
        simpo_gamma=simpo_gamma(job.beta, job.method_args),
        max_length=job.max_length,
    )
    return CPOTrainerTokenizedLikeDPO(
        model=job.policy,
        args=config,
        train_dataset=job.train_dataset(),
        processing_class=job.tokenizer,
        peft_config=job.peft_config,
        callbacks=job.callbacks,
    )


def sft_trainer(job: TrainingJob):
    """SFTTrainer on prompt + preferred completion, loss on the completion tokens only."""
    config = SFTConfig(**job.args, max_length=job.max_length)
    return SFTTrainer(
        model=job.policy,
        args=config,
        train_dataset=chosen_rows(job.data),
        processing_class=job.tokenizer,
        peft_config=job.peft_config,
        callbacks=job.callbacks,
    )


def rloo_trainer(reward: Callable[[TrainingJob], Callable]) -> Builder:
    """RLOOTrainer maximising reward - beta * KL(pi || pi_ref), the KL summed over the sequence.

    `reward(job)` returns TRL's reward function; its __name__ names the logged reward.
    """

    def build(job: TrainingJob):
        args = job.method_args
        config = RLOOConfig(
            **job.args,
            beta=job.beta,
            num_generations=args["num_generations"],
            max_completion_length=args["max_completion_length"],
            temperature=1.0,  # samples from pi itself, so the KL penalty is an unbiased estimate
            disable_dropout=True,  # the log-probs of the samples must be those they were drawn with
        )
        # RLOOTrainer loads its own frozen copy of the policy as pi_ref (from the policy's path).
        return on_policy_trainer(RLOOTrainer, job, reward, config)

    return build


def on_policy_trainer(trainer_class, job: TrainingJob, reward, config, **extra):
    """An on-policy TRL trainer (RLOO, GRPO, online DPO) sampling from the job's prompts and
    scored by `reward(job)`."""
    return trainer_class(
        model=job.policy,
        reward_funcs=reward(job),
        args=config,
        train_dataset=prompt_rows(job.data),
        processing_class=job.tokenizer,
        peft_config=job.peft_config,
        callbacks=job.callbacks,
        **extra,
    )


def grpo_trainer(reward: Callable[[TrainingJob], Callable]) -> Builder:
    """GRPOTrainer with the DeepSeekMath objective (loss_type "grpo", Shao et al. 2024, eq. 3):
    group-normalised advantages, the clipped ratio and beta times the per-token KL estimate,
    averaged over each completion's tokens, then over completions.

    TRL's defaults differ from the paper: beta 0.0 (no KL term), loss_type "dapo" (tokens
    averaged over the whole batch) and the KL term weighted by the importance ratio; all three
    are set here. `reward(job)` is as for rloo_trainer.
    """

    def build(job: TrainingJob):
        args = job.method_args
        config = GRPOConfig(
            **job.args,
            beta=job.beta,
            loss_type="grpo",
            # TRL's default (DeepSeek-V3.2) multiplies the KL term by the importance ratio;
            # DeepSeekMath's is the plain estimate (same value on-policy, another gradient).
            use_bias_correction_kl=False,
            num_generations=args["num_generations"],
            max_completion_length=args["max_completion_length"],
            temperature=1.0,  # samples from pi itself: the KL estimate and the ratios hold
            top_k=0,
            top_p=1.0,
            use_vllm=False,
            disable_dropout=True,
        )
        # With beta > 0 GRPOTrainer loads its own frozen pi_ref from the policy's path; with
        # LoRA the reference is the base with the adapter off.
        return on_policy_trainer(GRPOTrainer, job, reward, config)

    return build


class _OwnSpecialTokens:
    """The tokenizer, calling it with its own special-token rule whatever the caller asks."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __call__(self, *args, add_special_tokens=None, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def through_first_eos(ids: list[int], eos_ids: list[int]) -> list[int]:
    """A sample's ids up to and including its first EOS (all of them if it has none)."""
    ends = [i for i, token in enumerate(ids) if token in eos_ids]
    return ids[: ends[0] + 1] if ends else ids


class OnlineDPOTrainerWithSampleStats(OnlineDPOTrainer):
    """TRL's OnlineDPOTrainer, also logging what it sampled as GRPO and RLOO log it.

    Per step: the mean sampled length (`completions/mean_length`), the share of pairs whose two
    samples tie on reward (`frac_reward_zero_std`: a group of 2 has zero spread exactly then)
    and the cumulative prompt + completion tokens (`num_tokens`), which TRL's trainer leaves
    out. Text prompts are tokenized with the tokenizer's own BOS rule, as every other trainer
    and the harness's scorer do (TRL adds no special tokens here), and the reward functions get
    each sample's ids cut after its first EOS, as GRPO and RLOO pass them (TRL pads them).

    Private TRL API, pinned (tests/test_pinned_internals.py): `_generate` and
    `_calculate_rewards_from_functions`, both called from `training_step`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stats |= {"completions/mean_length": [], "frac_reward_zero_std": []}

    def _generate(self, model, prompts, images=None):
        tokenizer = self.processing_class
        if isinstance(prompts[0], str):
            self.processing_class = _OwnSpecialTokens(tokenizer)
        try:
            out = super()._generate(model, prompts, images)
        finally:
            self.processing_class = tokenizer
        _, prompt_mask, _, completion_mask, _ = out
        lengths = self.accelerator.gather_for_metrics(completion_mask.sum(1).float())
        self.stats["completions/mean_length"].append(lengths.mean().item())
        tokens = self.accelerator.gather_for_metrics(prompt_mask.sum() + completion_mask.sum())
        self.state.num_input_tokens_seen += int(tokens.sum().item())
        return out

    def _calculate_rewards_from_functions(
        self, prompts, completions, completion_ids_list, **reward_kwargs
    ):
        cut = [through_first_eos(ids, self.eos_token_ids) for ids in completion_ids_list]
        rewards = super()._calculate_rewards_from_functions(
            prompts, completions, cut, **reward_kwargs
        )
        first, second = rewards.split(len(prompts) // 2)  # sample 1 and sample 2 of each prompt
        ties = self.accelerator.gather_for_metrics(torch.isclose(first, second).float())
        self.stats["frac_reward_zero_std"].append(ties.mean().item())
        return rewards

    def log(self, logs, *args, **kwargs):
        if "loss" in logs:  # a training log, not the end-of-training summary
            logs["num_tokens"] = float(self.state.num_input_tokens_seen)
        super().log(logs, *args, **kwargs)


def online_dpo_trainer(reward: Callable[[TrainingJob], Callable]) -> Builder:
    """OnlineDPOTrainer: each step samples 2 completions per prompt from pi (TRL fixes the 2),
    ranks them with the reward and takes the DPO sigmoid loss -log sigmoid(beta * margin) on
    the pair (Guo et al. 2024). The reference is `job.reference`, or with LoRA the base with
    the adapter off. `reward(job)` is as for rloo_trainer.
    """

    def build(job: TrainingJob):
        config = OnlineDPOConfig(
            **job.args,
            beta=job.beta,
            loss_type="sigmoid",
            max_new_tokens=job.method_args["max_completion_length"],
            max_length=job.max_length,
            temperature=1.0,  # TRL's default 0.9 would sample from a sharpened pi, not pi
            top_k=0,
            top_p=1.0,
            use_vllm=False,
            disable_dropout=True,
        )
        for callback in job.callbacks:
            if isinstance(callback, MetricsCallback):
                callback.sequences_per_row = 2  # a prompt row is trained on as a sampled pair
        return on_policy_trainer(
            OnlineDPOTrainerWithSampleStats, job, reward, config, ref_model=job.reference
        )

    return build


def continuations(tokenizer, prompts: list, completions: list, completion_ids: list) -> list:
    """Each sampled completion as the text that continues its prompt, as in the data's pairs.

    TRL decodes the completion tokens alone; harness.data.sequences.continuation_text keeps the
    space between prompt and completion. Chat prompts (message lists) pass through unchanged.
    """
    out = []
    for prompt, text, ids in zip(prompts, completions, completion_ids, strict=True):
        if isinstance(prompt, str):
            prompt_ids = encode(tokenizer, prompt)
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
    model = reward_model_for(job.data, backbone=job.model_source, seed=job.seed)
    if job.tracked is not None:
        job.tracked.log_metric(RM_ACCURACY, model.accuracy, step=0)
    tokenizer = job.tokenizer

    def reward_model(prompts, completions, completion_ids, **_):
        return model.score(prompts, continuations(tokenizer, prompts, completions, completion_ids))

    return reward_model
