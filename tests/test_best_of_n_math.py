"""Best-of-n's exact distribution and its KL bound, against answers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from harness.data.worlds import exact_math as exact
from harness.evaluate.best_of_n import first_best, kl_bound


def table(probs: list[float], rewards: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompt's reference log-probabilities and rewards, float64, shaped (1, outcomes)."""
    return (
        torch.tensor([probs], dtype=torch.float64).log(),
        torch.tensor([rewards], dtype=torch.float64),
    )


def bon_kl(probs, rewards, n) -> float:
    ref, r = table(probs, rewards)
    return exact.kl_divergence(exact.best_of_n_logps(ref, r, n), ref).item()


def test_the_bound_is_log_n_minus_n_minus_one_over_n():
    assert kl_bound(1) == 0.0
    assert kl_bound(2) == pytest.approx(math.log(2) - 0.5)  # 0.1931
    assert kl_bound(16) == pytest.approx(math.log(16) - 15 / 16)  # 1.8351


def test_two_outcomes_at_one_half_and_n_2():
    # The better outcome wins unless both draws are the worse: P_bon = (1/4, 3/4).
    ref, r = table([0.5, 0.5], [0.0, 1.0])
    assert_close(exact.best_of_n_logps(ref, r, 2).exp(), torch.tensor([[0.25, 0.75]]).double())
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert bon_kl([0.5, 0.5], [0.0, 1.0], 2) == pytest.approx(kl, rel=1e-12)
    assert kl == pytest.approx(0.1308, abs=1e-4) and kl_bound(2) == pytest.approx(0.1931, abs=1e-4)


def test_ties_form_one_class_split_by_reference_probability():
    # Rewards (0, 1, 1): the class {b, c} has F = 1, F- = 0.2, so it gets 1 - 0.2^3 = 0.992,
    # split 0.3 : 0.5 as the first sample in the class is drawn; a gets 0.2^3 = 0.008.
    ref, r = table([0.2, 0.3, 0.5], [0.0, 1.0, 1.0])
    got = exact.best_of_n_logps(ref, r, 3).exp()[0]
    assert_close(got, torch.tensor([0.008, 0.992 * 0.3 / 0.8, 0.992 * 0.5 / 0.8]).double())
    # All rewards tied: best-of-n is the reference itself.
    assert bon_kl([0.2, 0.3, 0.5], [1.0, 1.0, 1.0], 8) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("n", [1, 2, 3, 16, 128])
def test_exact_kl_is_zero_at_one_and_never_above_the_bound(n):
    g = torch.Generator().manual_seed(n)
    ref = torch.randn(4, 30, generator=g, dtype=torch.float64).log_softmax(-1)
    rewards = torch.randint(-5, 5, (4, 30), generator=g).double() * 0.05  # with ties
    logps = exact.best_of_n_logps(ref, rewards, n)
    assert_close(logps.exp().sum(-1), torch.ones(4, dtype=torch.float64))
    kl = exact.kl_divergence(logps, ref)
    if n == 1:
        assert_close(logps, ref)
    assert (kl <= kl_bound(n) + 1e-12).all(), (kl, kl_bound(n))
    # Best-of-n never lowers the expected reward, and raises it with n.
    if n > 1:
        previous = exact.best_of_n_logps(ref, rewards, n - 1)
        assert (
            exact.expected_reward(logps, rewards)
            >= exact.expected_reward(previous, rewards) - 1e-12
        ).all()


def test_distinct_rewards_approach_the_bound_as_the_masses_shrink():
    """m equally likely outcomes with distinct rewards: P_bon(k) = (k/m)^n - ((k-1)/m)^n.

    For finite masses the exact KL stays strictly below the bound (the bound is the limit of
    a continuous reward distribution), and the gap closes as the masses 1/m shrink.
    """
    n, gaps = 4, []
    for m in (2, 10, 100, 10_000):
        kl = bon_kl([1 / m] * m, list(range(m)), n)
        by_hand = sum(
            ((k / m) ** n - ((k - 1) / m) ** n) * math.log(m * ((k / m) ** n - ((k - 1) / m) ** n))
            for k in range(1, m + 1)
        )
        assert kl == pytest.approx(by_hand, rel=1e-9)
        gaps.append(kl_bound(n) - kl)
    assert all(gap > 0 for gap in gaps)
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-3


def test_the_sampler_rule_matches_the_exact_distribution_by_monte_carlo():
    """first_best over n reference draws, 40,000 times: each outcome's frequency within 4
    standard errors of the exact P_bon, ties included."""
    probs, rewards, n = [0.1, 0.25, 0.15, 0.3, 0.2], [0.0, 0.5, 0.5, 1.0, -1.0], 3
    exact_p = exact.best_of_n_logps(*table(probs, rewards), n).exp()[0]
    assert exact_p.sum().item() == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    trials = 40_000
    draws = torch.multinomial(torch.tensor(probs), trials * n, replacement=True, generator=g)
    draws = draws.view(trials, n).tolist()
    picked = [row[first_best([rewards[y] for y in row])] for row in draws]
    freq = torch.bincount(torch.tensor(picked), minlength=len(probs)).double() / trials
    stderr = (exact_p * (1 - exact_p) / trials).sqrt()
    assert ((freq - exact_p).abs() <= 4 * stderr).all(), (freq, exact_p)


def test_first_best_keeps_the_first_of_equal_scores():
    assert first_best([0.1, 0.7, 0.7, 0.2]) == 1
    assert first_best([3.0]) == 0
