"""The method registry: one entry per preference-optimization method or baseline.

Each entry says which TRL trainer runs it, what the experiment's `beta` means for it, which
data formats it takes, whether training uses a reference model, its paper, and the
method-specific settings (with the paper's defaults) that `Experiment.method_args` may set.
Adding a method is one `_register(Method(...))` entry here and one test; nothing else branches
on the method name. `harness methods` prints the table.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from harness.config.registry import Registry, did_you_mean
from harness.config.spec import Experiment
from harness.data.preference import PAIRED, PROMPT_ONLY, UNPAIRED
from harness.methods import best_of_n, trainers
from harness.methods.trainers import TrainingJob


@dataclass(frozen=True)
class Method:
    name: str
    trainer: str  # the TRL class that trains it, for the `harness methods` table
    beta_means: str
    formats: tuple[str, ...]  # data formats accepted (harness.data.preference.PAIRED, ...)
    uses_reference: bool  # whether training itself needs pi_ref (evaluation always uses it)
    paper: str
    # job -> a transformers Trainer ready to .train(); None for a method that trains nothing
    build: Callable[[TrainingJob], Any] | None
    settings: Mapping[str, Any] = field(default_factory=dict)  # method_args defaults
    needs_gold: bool = False  # trains on the world's gold reward (built-in worlds only)
    uses_beta: bool = True  # False: beta does not enter training, so runs are not named by it
    # Unpaired rows must hold both labels: the loss weighs desirable against undesirable ones.
    needs_both_labels: bool = False
    # Constraints between the method's settings and the experiment, checked at construction:
    # experiment -> an error message naming the dotted fields, or None.
    validate: Callable[[Experiment], str | None] | None = None
    # Best-of-n: no training; the best of method_args.n reference samples by this reward.
    picker: best_of_n.PickerBuilder | None = None

    def __post_init__(self):
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        if (self.build is None) == (self.picker is None):
            raise ValueError(f"method {self.name!r}: give either a trainer builder or a picker")

    @property
    def trains(self) -> bool:
        return self.build is not None

    def check(self, exp: Experiment) -> None:
        """Raise ValueError for an unknown method_args key or a violated constraint."""
        for key in exp.method_args:
            if key not in self.settings:
                known = ", ".join(self.settings) or "none"
                raise ValueError(
                    f"method_args.{key}: method {self.name!r} has no setting {key!r} "
                    f"(its settings: {known})." + did_you_mean(key, self.settings)
                )
        problem = self.validate and self.validate(exp)
        if problem:
            raise ValueError(problem)


METHODS: Registry[Method] = Registry("method")


def _register(method: Method) -> None:
    METHODS.register(method.name, method)


def resolved_args(exp: Experiment) -> dict[str, Any]:
    """The experiment's method settings with the method's paper defaults filled in."""
    return {**METHODS.get(exp.method).settings, **exp.method_args}


def flat_params(exp: Experiment) -> dict[str, Any]:
    """Every experiment field by dotted name, method settings with their defaults filled in."""
    return exp.flat_params(METHODS.get(exp.method).settings)


def config_label(exp: Experiment) -> str:
    """`dpo-b0.1`: the method and, where it enters training, beta; best-of-n by its n (`bon-n16`)."""
    method = METHODS.get(exp.method)
    if not method.trains:
        return f"{exp.method}-n{resolved_args(exp)['n']}"
    return f"{exp.method}-b{exp.beta:g}" if method.uses_beta else exp.method


# ---- the DPO family: DPOTrainer losses -----------------------------------------------------

_register(
    Method(
        name="dpo",
        trainer="trl.DPOTrainer (loss sigmoid)",
        beta_means="DPO beta: KL strength in the implicit reward beta*log(pi/pi_ref)",
        formats=(PAIRED,),
        uses_reference=True,
        paper="Rafailov et al. 2023, Direct Preference Optimization (arXiv:2305.18290)",
        build=trainers.dpo_trainer("sigmoid"),
    )
)
_register(
    Method(
        name="ipo",
        trainer="trl.DPOTrainer (loss ipo)",
        beta_means="IPO tau: the regulariser; the loss targets a per-token average log-ratio margin "
        "of 1/(2 tau) (TRL divides each response's summed log-ratio by its length)",
        formats=(PAIRED,),
        uses_reference=True,
        paper="Azar et al. 2023, A General Theoretical Paradigm to Understand Learning from Human Preferences (arXiv:2310.12036)",
        build=trainers.dpo_trainer("ipo"),
    )
)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _flip_rate(exp: Experiment) -> str | None:
    """cDPO and rDPO assume labels flipped with probability eps < 1/2 (at 1/2 they carry nothing)."""
    eps = resolved_args(exp)["label_smoothing"]
    if not _is_number(eps) or not 0 <= eps < 0.5:
        return f"method_args.label_smoothing must be a flip rate in [0, 0.5), got {eps!r}"
    return None


_register(
    Method(
        name="cdpo",
        trainer="trl.DPOTrainer (losses sigmoid + robust, weighted to cDPO)",
        beta_means="DPO beta; the labels are taken as flipped with probability label_smoothing (eps): "
        "loss -(1-eps) log sigmoid(beta h) - eps log sigmoid(-beta h), optimum at h = log((1-eps)/eps)/beta",
        formats=(PAIRED,),
        uses_reference=True,
        paper="Mitchell 2023, A note on DPO with noisy preferences and relationship to IPO (conservative DPO)",
        build=trainers.conservative_dpo_trainer(),
        settings={"label_smoothing": 0.1},  # the cDPO note's example flip rate
        validate=_flip_rate,
    )
)
_register(
    Method(
        name="rdpo",
        trainer="trl.DPOTrainer (loss robust)",
        beta_means="DPO beta; the loss is debiased for labels flipped with probability label_smoothing "
        "(eps): [-(1-eps) log sigmoid(beta h) + eps log sigmoid(-beta h)] / (1-2eps), no optimum in h",
        formats=(PAIRED,),
        uses_reference=True,
        paper="Chowdhury et al. 2024, Provably Robust DPO: Aligning Language Models with Noisy Feedback (arXiv:2403.00409)",
        build=trainers.dpo_trainer("robust"),
        settings={"label_smoothing": 0.1},  # a flip rate within the paper's studied 0.1-0.4
        validate=_flip_rate,
    )
)
_register(
    Method(
        name="slic",
        # TRL's form, not SLiC-HF's: max(0, 1 - beta * margin) on the margin of log(pi/pi_ref),
        # where SLiC-HF hinges the policy's own log-likelihood margin (no reference) and adds a
        # regulariser (cross-entropy on the SFT targets); neither is in TRL's loss.
        trainer="trl.DPOTrainer (loss hinge: on the reference-normalised margin, no SLiC-HF regulariser)",
        beta_means="SLiC: the hinge margin is 1/beta on the log-likelihood ratio",
        formats=(PAIRED,),
        uses_reference=True,
        paper="Zhao et al. 2023, SLiC-HF: Sequence Likelihood Calibration with Human Feedback (arXiv:2305.10425)",
        build=trainers.dpo_trainer("hinge"),
    )
)

# ---- other offline preference losses -------------------------------------------------------

_register(
    Method(
        name="kto",
        trainer="trl.KTOTrainer",
        beta_means="KTO beta: scale of the implied reward beta*log(pi/pi_ref) inside the value function",
        formats=(PAIRED, UNPAIRED),  # paired data is unpaired and shuffled (trainers.unpaired_rows)
        uses_reference=True,
        paper="Ethayarajh et al. 2024, KTO: Model Alignment as Prospect Theoretic Optimization (arXiv:2402.01306)",
        build=trainers.kto_trainer,
        # lambda_D = lambda_U = 1: the paper's default for balanced data (paired data is balanced).
        settings={"desirable_weight": 1.0, "undesirable_weight": 1.0},
        # The paper's weights keep lambda_D n_D / (lambda_U n_U) in [1, 4/3] (its Eq. 8): no
        # weight does with one label absent, and it reports no run on a single label.
        needs_both_labels=True,
    )
)
_register(
    Method(
        name="orpo",
        # TRL's ORPO averages its SFT (NLL) term over prompt and completion tokens; ours takes
        # the paper's (eq. 2), over the chosen completion only (trainers.PaperORPOTrainer).
        trainer="trl.experimental.orpo.ORPOTrainer (with the paper's SFT term: chosen completion tokens only)",
        beta_means="ORPO lambda: weight of the odds-ratio term added to the SFT loss (no reference)",
        formats=(PAIRED,),
        uses_reference=False,
        paper="Hong et al. 2024, ORPO: Monolithic Preference Optimization without Reference Model (arXiv:2403.07691)",
        build=trainers.orpo_trainer,
    )
)


def _simpo_margin(exp: Experiment) -> str | None:
    settings = resolved_args(exp)
    ratio, gamma = settings["gamma_beta_ratio"], settings["gamma"]
    if not _is_number(ratio) or ratio < 0:
        return f"method_args.gamma_beta_ratio must be a number >= 0, got {ratio!r}"
    if gamma is not None and (not _is_number(gamma) or gamma < 0):
        return f"method_args.gamma must be a number >= 0, or None for gamma_beta_ratio * beta, got {gamma!r}"
    return None


_register(
    Method(
        name="simpo",
        trainer="trl.experimental.cpo.CPOTrainer (loss simpo, cpo_alpha 0)",
        beta_means="SimPO beta: scale of the length-normalised reward beta*mean log pi (no reference); "
        "target margin gamma = gamma_beta_ratio * beta unless gamma is set",
        formats=(PAIRED,),
        uses_reference=False,
        paper="Meng et al. 2024, SimPO: Simple Preference Optimization with a Reference-Free Reward (arXiv:2405.14734)",
        build=trainers.simpo_trainer,
        # gamma = TRL's simpo_gamma, the target reward margin. The paper tunes gamma/beta and
        # suggests starting from 0.5 (its Llama-3-Base setting: beta 2.0, gamma 1.0), so gamma
        # follows beta unless set (trainers.simpo_gamma).
        settings={"gamma_beta_ratio": 0.5, "gamma": None},
        validate=_simpo_margin,
    )
)

# ---- baselines -----------------------------------------------------------------------------

_register(
    Method(
        name="sft",
        trainer="trl.SFTTrainer (prompt + preferred completion)",
        beta_means="unused in training (preferred-FT); only scales the eval/ implicit rewards",
        formats=(PAIRED, UNPAIRED),  # the chosen, or the desirable (label true), completions
        uses_reference=False,
        paper="Rafailov et al. 2023 (arXiv:2305.18290), sec. 6: the Preferred-FT baseline",
        build=trainers.sft_trainer,
        uses_beta=False,
    )
)


def _room_to_sample(exp: Experiment) -> str | None:
    """A sampled completion must leave room for its prompt in train.max_length."""
    length, limit = resolved_args(exp)["max_completion_length"], exp.train.max_length
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length < limit:
        return (
            f"method_args.max_completion_length must be a whole number of tokens from 1 to "
            f"train.max_length - 1 ({limit - 1}): prompt and sampled completion share "
            f"train.max_length; got {length!r}"
        )
    return None


def _whole_groups(exp: Experiment) -> str | None:
    """Group baselines (RLOO's leave-one-out, GRPO's group mean and std) need k >= 2 samples per
    prompt, whole groups per batch; and room to sample."""
    k = resolved_args(exp)["num_generations"]
    batch = exp.train.batch_size * exp.train.grad_accum
    if not isinstance(k, int) or k < 2 or batch % k:
        return (
            f"method_args.num_generations must be >= 2 and divide train.batch_size * "
            f"train.grad_accum ({batch}): each step samples whole groups of k completions per "
            f"prompt; got {k!r}"
        )
    return _room_to_sample(exp)


_RLOO_SETTINGS = {
    "num_generations": 4,  # k samples per prompt: the RLOO paper's best k (it compares 2 and 4)
    "max_completion_length": 24,  # tokens sampled per completion: the built-in worlds' length
}
_register(
    Method(
        name="rloo",
        trainer="trl.RLOOTrainer + reward model (trl.RewardTrainer, same pairs)",
        beta_means="KL coefficient: maximises r(x, y) - beta*log(pi/pi_ref), the objective DPO solves",
        formats=(PAIRED,),  # the pairs train the reward model; their prompts are sampled on-policy
        uses_reference=True,
        paper="Ahmadian et al. 2024, Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs (arXiv:2402.14740)",
        build=trainers.rloo_trainer(trainers.learned_reward),
        settings=_RLOO_SETTINGS,
        validate=_whole_groups,
    )
)
_register(
    Method(
        name="rloo_gold",
        trainer="trl.RLOOTrainer + the world's gold reward",
        beta_means="KL coefficient: maximises gold(x, y) - beta*log(pi/pi_ref) (DPO paper's PPO-GT analogue)",
        formats=(PAIRED, UNPAIRED, PROMPT_ONLY),  # only the prompts are used
        uses_reference=True,
        paper="Ahmadian et al. 2024 (arXiv:2402.14740); Rafailov et al. 2023, sec. 6.1 (PPO-GT)",
        build=trainers.rloo_trainer(trainers.gold_reward),
        settings=_RLOO_SETTINGS,
        needs_gold=True,
        validate=_whole_groups,
    )
)


# Generation settings shared by the online methods: the sampled length is the built-in worlds'
# completion length, where TRL defaults to 64 (online DPO) and 256 (GRPO).
_SAMPLED_LENGTH = {"max_completion_length": 24}  # tokens sampled per completion
_ONLINE_DPO = (
    "Guo et al. 2024, Direct Language Model Alignment from Online AI Feedback (arXiv:2402.04792)"
)
_ONLINE_DPO_BETA = (
    "DPO beta: loss -log sigmoid(beta * margin of log(pi/pi_ref)) on a pair pi sampled "
    "(2 completions per prompt, TRL's fixed number), ranked by the reward"
)
_register(
    Method(
        name="online_dpo",
        trainer="trl.experimental.online_dpo.OnlineDPOTrainer (loss sigmoid) + reward model (trl.RewardTrainer, same pairs)",
        beta_means=_ONLINE_DPO_BETA,
        formats=(PAIRED,),  # the pairs train the reward model; their prompts are sampled on-policy
        uses_reference=True,
        paper=_ONLINE_DPO,
        build=trainers.online_dpo_trainer(trainers.learned_reward),
        settings=_SAMPLED_LENGTH,
        validate=_room_to_sample,
    )
)
_register(
    Method(
        name="online_dpo_gold",
        trainer="trl.experimental.online_dpo.OnlineDPOTrainer (loss sigmoid) + the world's gold reward",
        beta_means=_ONLINE_DPO_BETA,
        formats=(PAIRED, UNPAIRED, PROMPT_ONLY),  # only the prompts are used
        uses_reference=True,
        paper=_ONLINE_DPO,
        build=trainers.online_dpo_trainer(trainers.gold_reward),
        settings=_SAMPLED_LENGTH,
        needs_gold=True,
        validate=_room_to_sample,
    )
)
_GRPO = "Shao et al. 2024, DeepSeekMath (arXiv:2402.03300), sec. 4.1: Group Relative Policy Optimization"
_GRPO_BETA = (
    "KL coefficient: beta times the per-token estimate pi_ref/pi - log(pi_ref/pi) - 1, averaged "
    "over each completion's tokens (DeepSeekMath eq. 3), so per sequence it weighs 1/length of "
    "rloo's sequence-summed KL"
)
_GRPO_SETTINGS = {
    "num_generations": 8,  # G samples per prompt: TRL's default (DeepSeekMath sampled 64)
    **_SAMPLED_LENGTH,
}
_register(
    Method(
        name="grpo",
        trainer="trl.GRPOTrainer (loss grpo) + reward model (trl.RewardTrainer, same pairs)",
        beta_means=_GRPO_BETA,
        formats=(PAIRED,),
        uses_reference=True,
        paper=_GRPO,
        build=trainers.grpo_trainer(trainers.learned_reward),
        settings=_GRPO_SETTINGS,
        validate=_whole_groups,
    )
)
_register(
    Method(
        name="grpo_gold",
        trainer="trl.GRPOTrainer (loss grpo) + the world's gold reward",
        beta_means=_GRPO_BETA,
        formats=(PAIRED, UNPAIRED, PROMPT_ONLY),
        uses_reference=True,
        paper=_GRPO,
        build=trainers.grpo_trainer(trainers.gold_reward),
        settings=_GRPO_SETTINGS,
        needs_gold=True,
        validate=_whole_groups,
    )
)


# ---- best-of-n: no training, the best of n reference samples -------------------------------


def _sample_count(exp: Experiment) -> str | None:
    n = resolved_args(exp)["n"]
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        return f"method_args.n must be an integer >= 1 (samples per prompt), got {n!r}"
    return None


_BEST_OF_N_SETTINGS = {"n": 16}  # samples per prompt; the DPO paper's baseline is best of 128
_BEST_OF_N_PAPERS = (
    "Stiennon et al. 2020, Learning to summarize from human feedback (arXiv:2009.01325); "
    "its KL bound: Beirami et al. 2024 (arXiv:2401.01879)"
)
_register(
    Method(
        name="bon",
        trainer="none: the best of n reference samples by a reward model (trl.RewardTrainer, same pairs)",
        beta_means="unused: nothing trains; eval/kl is the bound log n - (n-1)/n",
        formats=(PAIRED,),  # the pairs train the reward model that picks
        uses_reference=False,
        paper=_BEST_OF_N_PAPERS,
        build=None,
        picker=best_of_n.learned_picker,
        settings=_BEST_OF_N_SETTINGS,
        uses_beta=False,
        validate=_sample_count,
    )
)
_register(
    Method(
        name="bon_gold",
        trainer="none: the best of n reference samples by the world's gold reward",
        beta_means="unused: nothing trains; eval/kl is the bound log n - (n-1)/n",
        formats=(PAIRED, UNPAIRED, PROMPT_ONLY),  # only the prompts are used
        uses_reference=False,
        paper=_BEST_OF_N_PAPERS + "; Gao et al. 2022 (arXiv:2210.10760) against RL",
        build=None,
        picker=best_of_n.gold_picker,
        settings=_BEST_OF_N_SETTINGS,
        needs_gold=True,
        uses_beta=False,
        validate=_sample_count,
    )
)


# ---- the table `harness methods` prints ----------------------------------------------------


def method_table() -> str:
    """The registry as text: a summary line per method, then beta's meaning, settings and paper."""
    rows = [("method", "trainer", "data", "reference")]
    for name, m in METHODS.items():
        reference = "in training" if m.uses_reference else "eval only"
        reference = reference if m.trains else "sampled"
        rows.append((name, m.trainer, ", ".join(m.formats), reference))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    for name, m in METHODS.items():
        settings = ", ".join(f"method_args.{k}={v}" for k, v in m.settings.items()) or "none"
        lines.append(f"\n{name}")
        lines += _wrapped("beta", m.beta_means)
        lines += _wrapped("settings", settings)
        lines += _wrapped("paper", m.paper)
        if m.needs_gold:
            lines += _wrapped("needs", "a dataset with a gold reward (a built-in world)")
    return "\n".join(lines)


def _wrapped(label: str, text: str) -> list[str]:
    return textwrap.wrap(
        text, 100, initial_indent=f"  {label + ':':<10}", subsequent_indent=" " * 12
    )
