"""Every MLflow metric name the harness logs, defined once: `{stage}/{family}/{name}`.

One scheme for every method, so the MLflow UI and `analysis/` compare like with like. Names
used in more than one place are constants or small constructors here; `analysis` imports this
module (it holds no training code) rather than retyping them. MLflow accepts `^[/\\w.\\- ]*$`.
"""

from __future__ import annotations

import re

# ---- eval/: the harness's own yardstick, identical for every method --------------------------

EVAL_KL = "eval/kl"  # sequence KL(pi || pi_ref) from samples at temperature 1
EVAL_KL_STDERR = "eval/kl_stderr"
EVAL_LENGTH = "eval/length"  # mean sampled completion length, tokens (EOS included)
EVAL_GOLD_REWARD = "eval/gold/reward"  # mean gold reward of the samples (built-in worlds)
PAIR_REWARD_NAMES = ("chosen", "rejected", "margins", "accuracies")


def eval_rewards(name: str) -> str:
    """`eval/rewards/{chosen,rejected,margins,accuracies}`: implicit rewards on held-out pairs."""
    return f"eval/rewards/{name}"


def eval_logps(side: str) -> str:
    """`eval/logps/{chosen,rejected}`: summed policy log-probs of the held-out responses."""
    return f"eval/logps/{side}"


EVAL_PAIR_ACCURACY = eval_rewards("accuracies")
EVAL_PAIR_METRICS = tuple(eval_rewards(n) for n in PAIR_REWARD_NAMES) + (
    eval_logps("chosen"),
    eval_logps("rejected"),
)
# The same families on held-out pairs whose two responses no train pair contains, for a world
# that reuses its prompts (exact): `eval/new/rewards/...`, `eval/new/logps/...`.
NEW_PAIRS = "new"


def new_pair_metric(name: str) -> str:
    """The name of an `eval/...` held-out pair metric on the fully new pairs: `eval/new/...`."""
    return name.replace("eval/", f"eval/{NEW_PAIRS}/", 1)


EVAL_NEW_PAIR_ACCURACY = new_pair_metric(EVAL_PAIR_ACCURACY)
EVAL_NEW_PAIR_METRICS = tuple(new_pair_metric(n) for n in EVAL_PAIR_METRICS)
EVAL_SAMPLE_METRICS = (EVAL_KL, EVAL_KL_STDERR, EVAL_LENGTH)

# The exact world's enumerated quantities (harness.data.worlds.exact).
EVAL_KL_EXACT = "eval/kl_exact"
EVAL_GOLD_REWARD_EXACT = "eval/gold/reward_exact"
EVAL_FRONTIER_GAP = "eval/frontier_gap"
EVAL_INVALID_EXACT = "eval/invalid_exact"

# ---- train/: the trainers' own logs, renamed into the scheme ---------------------------------

# TRL log keys with a fixed place in the scheme; any other key becomes train/{method}/{key}.
TRAIN_NAMES = {
    "loss": "train/loss",
    "grad_norm": "train/optim/grad_norm",
    "learning_rate": "train/optim/lr",
    "epoch": "train/progress/epoch",
    "num_tokens": "train/progress/tokens",  # TRL's count of input tokens seen, cumulative
}
TRAIN_LOSS = TRAIN_NAMES["loss"]
# The training budget so far, cumulative over steps and processes: the response sequences the
# loss saw (harness.methods.callbacks.MetricsCallback: batch x grad accumulation x processes x
# sequences per row, 2 for a pair, 1 for a KTO, SFT or on-policy row) and the input tokens,
# prompt and responses (TRL's num_tokens).
TRAIN_COMPLETIONS = "train/progress/completions"
TRAIN_TOKENS = TRAIN_NAMES["num_tokens"]
SHARED_FAMILIES = ("rewards/", "logps/", "logits/")
# End-of-training summaries from transformers.Trainer, kept once under train/summary/.
SUMMARY_KEYS = {
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
    "train_loss",
}


def train_metric_name(method: str, key: str) -> str:
    """A trainer's log key in the scheme: shared families stay shared, the rest per method."""
    if key in TRAIN_NAMES:
        return TRAIN_NAMES[key]
    # rewards/chosen is shared; RLOO's per-reward-function rewards/{name}/mean is its own
    if key.startswith(SHARED_FAMILIES) and key.count("/") == 1:
        return f"train/{key}"
    if key in SUMMARY_KEYS:
        return f"train/summary/{key.removeprefix('train_')}"
    return f"train/{method}/{clean_name(key)}"


# ---- data/: what was loaded and what was filtered --------------------------------------------

DATA_TRAIN_ROWS = "data/train_rows"
DATA_EVAL_PAIRS = "data/eval_pairs"
DATA_EVAL_NEW_PAIRS = "data/eval_new_pairs"  # where a world has them (World.new_pairs)


def data_filtered(reason: str) -> str:
    return f"data/filtered/{reason}"


def data_truncated(what: str) -> str:
    """Rows cut to fit train.max_length or the model's context (`eval_pairs`, `eval_new_pairs`,
    `eval_prompts`)."""
    return f"data/truncated/{what}"


# ---- scoring: win rates, the judge, lm-eval --------------------------------------------------

RM_ACCURACY = "rm/accuracy"  # the reward-model judge's held-out pair accuracy
WINRATE_PREFIX = "winrate/"
BENCH_PREFIX = "bench/"
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"


def winrate(judge: str, baseline: str, temperature: float | None = None) -> str:
    """`winrate/{judge}/vs_{baseline}[/t{T:g}]`; temperature None is the headline value."""
    base = f"{WINRATE_PREFIX}{judge}/vs_{baseline}"
    return base if temperature is None else f"{base}/t{temperature:g}"


_WINRATE = re.compile(
    rf"^{WINRATE_PREFIX}(?P<judge>[^/]+)/vs_(?P<baseline>[^/]+)(?:/t(?P<temperature>[0-9.eE+-]+))?$"
)


def parse_winrate(name: str) -> tuple[str, str, float | None] | None:
    """(judge, baseline, temperature or None for the headline) of a `winrate(...)` name, or None
    for any other name (CI bounds included)."""
    match = _WINRATE.match(name)
    if not match or name.endswith((CI_LOW, CI_HIGH)):
        return None
    temperature = match["temperature"]
    return match["judge"], match["baseline"], None if temperature is None else float(temperature)


def bench(task: str, metric: str, suffix: str = "") -> str:
    """`bench/{task}/{metric}{suffix}`, cleaned to a valid MLflow name."""
    return clean_name(f"{BENCH_PREFIX}{task}/{metric}{suffix}")


# ---- sweep/: the study's parent run ----------------------------------------------------------

SWEEP_OBJECTIVE = "sweep/objective"
SWEEP_OBJECTIVE_STD = "sweep/objective_std"
SWEEP_BEST_VALUE = "sweep/best_value"

_INVALID = re.compile(r"[^\w./\- ]")


def clean_name(name: str) -> str:
    """Replace every character MLflow refuses in a metric name with '_'."""
    return _INVALID.sub("_", name)
