"""The method registry: one entry per preference-optimization method or baseline.

Each entry says which TRL trainer runs it, what the experiment's `beta` means for it, which
data formats it takes, whether training uses a reference model, its paper, and the
method-specific settings (with the paper's defaults) that `Experiment.method_args` may set.
Adding a method is one `METHODS.register(...)` call here and one test; nothing else branches
on the method name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from harness.registry import Registry, did_you_mean

if TYPE_CHECKING:
    from harness.train import TrainingJob


@dataclass(frozen=True)
class Method:
    name: str
    trainer: str  # the TRL class that trains it, for the `harness methods` table
    beta_means: str
    formats: tuple[str, ...]  # data formats accepted (harness.data.PAIRED, ...)
    uses_reference: bool  # whether training itself needs pi_ref (evaluation always uses it)
    paper: str
    build: Callable[[TrainingJob], Any]  # job -> a transformers Trainer ready to .train()
    settings: Mapping[str, Any] = field(default_factory=dict)  # method_args defaults

    def __post_init__(self):
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    def check_args(self, args: Mapping[str, Any]) -> None:
        for key in args:
            if key not in self.settings:
                known = ", ".join(self.settings) or "none"
                raise ValueError(
                    f"method_args.{key}: method {self.name!r} has no setting {key!r} "
                    f"(its settings: {known})." + did_you_mean(key, self.settings)
                )


METHODS: Registry[Method] = Registry("method")


def _dpo_family(loss_type: str) -> Callable[[TrainingJob], Any]:
    """DPOTrainer with one of its losses; beta and label_smoothing come from the experiment."""

    def build(job: TrainingJob):
        from trl import DPOConfig, DPOTrainer

        from harness.refcache import with_reference_cache

        args = job.method_args
        cached = job.exp.train.reference_cache
        config = DPOConfig(
            **job.trainer_args(),
            beta=job.exp.beta,
            loss_type=[loss_type],
            label_smoothing=args.get("label_smoothing", 0.0),
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


METHODS.register(
    "dpo",
    Method(
        name="dpo",
        trainer="trl.DPOTrainer (loss sigmoid)",
        beta_means="DPO beta: KL strength in the implicit reward beta*log(pi/pi_ref)",
        formats=("paired",),
        uses_reference=True,
        paper="Rafailov et al. 2023, Direct Preference Optimization (arXiv:2305.18290)",
        build=_dpo_family("sigmoid"),
    ),
)


METHODS.register(
    "ipo",
    Method(
        name="ipo",
        trainer="trl.DPOTrainer (loss ipo)",
        beta_means="IPO tau: the regulariser; the loss targets a log-ratio margin of 1/(2 tau)",
        formats=("paired",),
        uses_reference=True,
        paper="Azar et al. 2023, A General Theoretical Paradigm to Understand Learning from Human Preferences (arXiv:2310.12036)",
        build=_dpo_family("ipo"),
    ),
)
METHODS.register(
    "cdpo",
    Method(
        name="cdpo",
        trainer="trl.DPOTrainer (loss robust, label smoothing)",
        beta_means="DPO beta, with labels assumed flipped with probability label_smoothing",
        formats=("paired",),
        uses_reference=True,
        paper="Chowdhury et al. 2024, Provably Robust DPO (arXiv:2403.00409); Mitchell 2023, cDPO note",
        build=_dpo_family("robust"),
        settings={"label_smoothing": 0.1},  # the cDPO note's example flip rate
    ),
)
METHODS.register(
    "slic",
    Method(
        name="slic",
        trainer="trl.DPOTrainer (loss hinge)",
        beta_means="SLiC: the hinge margin is 1/beta on the log-likelihood ratio",
        formats=("paired",),
        uses_reference=True,
        paper="Zhao et al. 2023, SLiC-HF: Sequence Likelihood Calibration with Human Feedback (arXiv:2305.10425)",
        build=_dpo_family("hinge"),
    ),
)
