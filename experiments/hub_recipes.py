"""Real-world studies for a GPU: hub models on hub preference data, in TRL's dataset formats.

Not trained offline (the tests only validate them, without touching the network). Run one with
`harness run experiments.hub_recipes:TLDR` on a machine that can reach the Hugging Face hub.
Within a study every method shares the model, data, steps and batch, so the runs compare like
with like; only beta and the method's own settings differ.
"""

from harness import DataSpec, EvalSpec, Experiment, ModelSpec, TrainSpec

# ---- TL;DR summarisation (DPO paper, sec. 6.2) with Pythia-1B --------------------------------
# The reference is a Pythia-1B SFT'd on TL;DR; the pairs are the OpenAI summarisation
# comparisons in TRL's standard (string) format, so no chat template is needed.
PYTHIA_TLDR_SFT = ModelSpec(name_or_path="trl-lib/pythia-1b-deduped-tldr-sft")
TLDR_TRAIN = TrainSpec(
    lr=1e-6,  # the DPO paper's rate
    steps=2000,
    batch_size=8,
    grad_accum=8,  # 64 pairs per step, as in the DPO paper
    warmup_steps=150,  # the DPO paper's warmup
    max_length=640,  # TL;DR posts run to ~500 tokens; summaries to ~50
    eval_every=200,
    log_every=10,
)
TLDR_EVAL = EvalSpec(n_prompts=256, n_pairs=512, max_new_tokens=64)


def _tldr(method: str, beta: float, **method_args) -> Experiment:
    return Experiment(
        method=method,
        beta=beta,
        dataset="trl-lib/tldr-preference",
        name=f"tldr-{method}-b{beta:g}",
        model=PYTHIA_TLDR_SFT,
        train=TLDR_TRAIN,
        eval=TLDR_EVAL,
        method_args=method_args,
    )


TLDR = [
    _tldr("dpo", 0.5),  # the DPO paper's beta for summarisation
    _tldr("ipo", 0.1),
    _tldr("kto", 0.1),  # paired data, unpaired and shuffled by the harness
    _tldr("orpo", 0.1),
    _tldr("sft", 0.5),  # preferred-FT; beta only scales the eval/ implicit rewards
    # RLHF baseline: a reward model fine-tuned from the same SFT model on the same pairs, then
    # RLOO with TRL's default KL coefficient; completions as long as the evaluated ones.
    _tldr("rloo", 0.05, max_completion_length=64),
]

# ---- UltraFeedback chat alignment with Qwen2.5-0.5B-Instruct ---------------------------------
# Conversational pairs (message lists), rendered with the model's chat template by TRL.
QWEN = ModelSpec(name_or_path="Qwen/Qwen2.5-0.5B-Instruct")
CHAT_TRAIN = TrainSpec(
    lr=5e-7,
    steps=1000,
    batch_size=8,
    grad_accum=16,
    max_length=1024,
    warmup_steps=100,
    eval_every=100,
    log_every=10,
)
CHAT_EVAL = EvalSpec(n_prompts=256, n_pairs=512, max_new_tokens=256)
# UltraFeedback ships test splits, but the harness holds out its own share of prompts so that
# every dataset is split the same way.
CHAT_DATA = DataSpec(eval_fraction=0.02)


def _chat(
    method: str,
    beta: float,
    study: str = "ultrafeedback",
    dataset: str = "trl-lib/ultrafeedback_binarized",
    **method_args,
) -> Experiment:
    return Experiment(
        method=method,
        beta=beta,
        dataset=dataset,
        name=f"{study}-{method}-b{beta:g}",
        model=QWEN,
        data=CHAT_DATA,
        train=CHAT_TRAIN,
        eval=CHAT_EVAL,
        method_args=method_args,
    )


ULTRAFEEDBACK = [
    _chat("dpo", 0.1),
    _chat("ipo", 0.1),
    _chat("kto", 0.1),
    _chat("orpo", 0.1),  # ORPO's lambda on UltraFeedback
    _chat("simpo", 2.5, gamma=1.4),  # SimPO's Llama-3-Instruct setting (beta 2.5, gamma 1.4)
    _chat("sft", 0.1),
]

# KTO on native unpaired data: a 14k-example mix of desirable and undesirable completions.
KTO_MIX = [_chat("kto", 0.1, study="ktomix", dataset="trl-lib/kto-mix-14k")]

# ---- Anthropic HH (helpful) with Qwen2.5-0.5B-Instruct: the DPO paper's dialogue task ----------
HH = [
    _chat("dpo", 0.1, study="hh", dataset="trl-lib/hh-rlhf-helpful-base"),
    _chat("sft", 0.1, study="hh", dataset="trl-lib/hh-rlhf-helpful-base"),
]

# Which of TRL's formats each dataset is in: the tests check every recipe's method takes it.
DATASET_FORMATS = {
    "trl-lib/tldr-preference": "paired",
    "trl-lib/ultrafeedback_binarized": "paired",
    "trl-lib/kto-mix-14k": "unpaired",
    "trl-lib/hh-rlhf-helpful-base": "paired",
}
