"""Best-of-n: the policy that answers with the best of n reference samples, by a picking reward.

No training: for each prompt, n completions are sampled from the reference at the asked
temperature, a picking reward (the experiment's reward model for `bon`, the world's gold
reward for `bon_gold`) scores them, and the highest-scoring one is the answer; a tie goes to
the first sample drawn (`first_best`). Its KL to the reference is not estimable from its
samples (their log-probability under best-of-n needs the reference's whole reward
distribution), so `eval/kl` is the analytic bound `kl_bound(n)`; the exact world also logs the
exact value from the enumerated distribution (harness.data.worlds.exact_math.best_of_n_logps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.data.sequences import Samples, Sampling, sample_completions
from harness.methods.best_of_n import Picker


def kl_bound(n: int) -> float:
    """KL(pi_bon || pi_ref) <= log n - (n - 1)/n (Beirami et al. 2024, Theorem 1, arXiv:2401.01879).

    The value the literature reports as best-of-n's KL (Stiennon et al. 2020, Gao et al. 2022).
    It is reached only in the limit of a continuous reward distribution: over finitely many
    responses, each of positive reference mass, the exact KL is strictly below it.
    """
    return math.log(n) - (n - 1) / n


def first_best(scores: list[float]) -> int:
    """The index of the highest score; of several equal highest, the first (the first sample)."""
    return max(range(len(scores)), key=lambda j: (scores[j], -j))


@dataclass
class BestOfN:
    """Samples of the best-of-n policy over `reference` (see the module docstring)."""

    reference: Any
    tokenizer: Any
    picker: Picker
    n: int

    def sample(self, prompts: list[str], sampling: Sampling) -> Samples:
        """One best-of-n completion per prompt.

        The n candidates are drawn in rounds (round j holds the j-th candidate of every prompt)
        from one seeded stream, so at n = 1 the answers are the reference's own samples.
        """
        k = len(prompts)
        drawn = sample_completions(self.reference, self.tokenizer, prompts * self.n, sampling)
        scores = self.picker(prompts * self.n, drawn.continuations(self.tokenizer))
        best = [i + k * first_best(scores[i::k]) for i in range(k)]
        return Samples(
            prompt_ids=[drawn.prompt_ids[b] for b in best],
            completion_ids=[drawn.completion_ids[b] for b in best],
            texts=[drawn.texts[b] for b in best],
        )
