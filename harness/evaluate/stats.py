"""Quantities the harness computes itself, as small pure functions with their formulas."""

from __future__ import annotations

import torch


def implicit_rewards(
    policy_logps: torch.Tensor, reference_logps: torch.Tensor, beta: float
) -> torch.Tensor:
    """r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)), per sequence (DPO paper, eq. 5).

    Shapes: (n,) summed log-probabilities of each response under the policy and the reference.
    """
    return beta * (policy_logps - reference_logps)


def pair_reward_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """Means over held-out pairs of the implicit rewards, their margin and the pair accuracy.

    accuracy = mean over pairs of 1[r(chosen) > r(rejected)] + 0.5 * 1[r(chosen) = r(rejected)]:
    a tie counts half, as in the win rates, so a policy equal to its reference (every margin 0,
    step 0) reads 0.5, chance, not 0. TRL's `train/rewards/accuracies` counts ties as failures.
    """
    wins = (chosen > rejected).double() + 0.5 * (chosen == rejected).double()
    return {
        "chosen": chosen.mean().item(),
        "rejected": rejected.mean().item(),
        "margins": (chosen - rejected).mean().item(),
        "accuracies": wins.mean().item(),
    }


def kl_estimate(policy_logps: torch.Tensor, reference_logps: torch.Tensor) -> tuple[float, float]:
    """Monte-Carlo KL(pi || pi_ref) at the sequence level, and its standard error.

    With y_i ~ pi(.|x_i), each log pi(y_i|x_i) - log pi_ref(y_i|x_i) is an unbiased sample of
    KL(pi(.|x_i) || pi_ref(.|x_i)); their mean estimates E_x KL, with stderr = sd / sqrt(n).
    """
    samples = (policy_logps - reference_logps).double()
    n = samples.numel()
    stderr = samples.std(unbiased=True).item() / n**0.5 if n > 1 else float("nan")
    return samples.mean().item(), stderr
