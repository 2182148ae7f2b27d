"""The exact world's math: enumeration, KL, expected reward and the optimal policy, by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from harness.data.worlds import exact_math as exact

# Words a (id 1) and b (id 2), EOS (id 0), responses of at most L = 2 words. Next-token
# probabilities over (EOS, a, b) after each prefix, written out:
NEXT = {
    (): (0.2, 0.5, 0.3),
    ("a",): (0.7, 0.1, 0.2),
    ("b",): (0.4, 0.3, 0.3),
    ("a", "a"): (0.9, 0.05, 0.05),
    ("a", "b"): (0.6, 0.3, 0.1),
    ("b", "a"): (0.8, 0.1, 0.1),
    ("b", "b"): (0.5, 0.25, 0.25),
}
# Outcomes in module order: a, b, aa, ab, ba, bb (valid); EOS first; aaa, aab, ..., bbb (overflow).
# Each is the product of its next-token probabilities, e.g. ab = 0.5 * 0.2 * 0.6 = 0.06.
PROBS = [
    0.5 * 0.7,
    0.3 * 0.4,
    0.5 * 0.1 * 0.9,
    0.5 * 0.2 * 0.6,
    0.3 * 0.3 * 0.8,
    0.3 * 0.3 * 0.5,
    0.2,
    0.5 * 0.1 * 0.05,
    0.5 * 0.1 * 0.05,
    0.5 * 0.2 * 0.3,
    0.5 * 0.2 * 0.1,
    0.3 * 0.3 * 0.1,
    0.3 * 0.3 * 0.1,
    0.3 * 0.3 * 0.25,
    0.3 * 0.3 * 0.25,
]


def hand_next_logps(table: dict) -> list[torch.Tensor]:
    """The per-depth tensors `next_token_logps` returns, from a {prefix: probabilities} table."""
    depths = []
    for depth in range(3):
        rows = [table[p] for p in sorted(table) if len(p) == depth]
        depths.append(torch.tensor(rows, dtype=torch.float64).log()[None])
    return depths


def test_outcomes_match_the_products_written_out_and_sum_to_one():
    logps = exact.outcome_logps(hand_next_logps(NEXT), word_ids=[1, 2], eos_id=0)
    assert logps.shape == (1, 15)
    assert_close(logps.exp()[0], torch.tensor(PROBS, dtype=torch.float64))
    assert sum(PROBS) == pytest.approx(1.0)
    assert exact.response_tree(2, 2) == [(0,), (1,), (0, 0), (0, 1), (1, 0), (1, 1)]
    invalid = 0.2 + 0.5 * 0.1 * 0.1 + 0.5 * 0.2 * 0.4 + 0.3 * 0.3 * 0.2 + 0.3 * 0.3 * 0.5
    assert exact.invalid_logp(logps, n_valid=6).exp().item() == pytest.approx(invalid)


def test_kl_and_reward_match_a_brute_force_sum():
    uniform = {prefix: (1 / 3, 1 / 3, 1 / 3) for prefix in NEXT}
    p = exact.outcome_logps(hand_next_logps(NEXT), [1, 2], 0)
    q = exact.outcome_logps(hand_next_logps(uniform), [1, 2], 0)
    q_probs = [1 / 3**2] * 2 + [1 / 3**3] * 4 + [1 / 3] + [1 / 3**3] * 8
    rewards = [0.5, 0.0, 1.0, 0.25, -0.5, 0.0] + [-3.0] * 9
    brute_kl = sum(pi * math.log(pi / qi) for pi, qi in zip(PROBS, q_probs, strict=True))
    brute_reward = sum(pi * r for pi, r in zip(PROBS, rewards, strict=True))
    r = torch.tensor([rewards], dtype=torch.float64)
    assert exact.kl_divergence(p, q).item() == pytest.approx(brute_kl, rel=1e-12)
    assert exact.expected_reward(p, r).item() == pytest.approx(brute_reward, rel=1e-12)
    assert exact.kl_divergence(p, p).item() == 0.0


@pytest.fixture
def table():
    """A random reference over 40 outcomes for 3 prompts; rewards on a 0.05 grid like the world's."""
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 40, generator=g, dtype=torch.float64).log_softmax(-1)
    rewards = torch.randint(-20, 20, (3, 40), generator=g).double() * 0.05
    return ref, rewards


@pytest.mark.parametrize("beta", [0.05, 0.3, 2.0])
def test_optimal_kl_equals_expected_reward_over_beta_minus_log_z(table, beta):
    ref, rewards = table
    opt = exact.optimal_logps(ref, rewards, beta)
    assert_close(opt.exp().sum(-1), torch.ones(3, dtype=torch.float64))
    identity = exact.expected_reward(opt, rewards) / beta - exact.log_partition(ref, rewards, beta)
    assert_close(exact.kl_divergence(opt, ref), identity)


def test_optimum_tends_to_the_reference_and_to_the_argmax(table):
    ref, rewards = table
    kl, reward = exact.optimal_point(ref, rewards, 1e4)
    assert kl < 1e-6
    assert reward == pytest.approx(exact.expected_reward(ref, rewards).mean().item(), abs=1e-4)
    opt = exact.optimal_logps(ref, rewards, 1e-3)
    best = rewards == rewards.max(-1, keepdim=True).values
    assert_close((opt.exp() * best).sum(-1), torch.ones(3, dtype=torch.float64))
    # On the argmax set pi* is pi_ref renormalised, so KL = -log pi_ref(argmax set).
    assert_close(exact.kl_divergence(opt, ref), -(ref.exp() * best).sum(-1).log())


def test_frontier_is_monotone_and_the_gap_is_zero_on_it(table):
    ref, rewards = table
    points = exact.frontier(ref, rewards, [0.01, 0.1, 1.0, 10.0])
    kls, values = [kl for _, kl, _ in points], [r for _, _, r in points]
    assert kls == sorted(kls, reverse=True) and values == sorted(values, reverse=True)
    assert exact.frontier_gap(ref, rewards, ref) == 0.0
    for beta in (0.07, 0.7):
        assert exact.frontier_gap(
            ref, rewards, exact.optimal_logps(ref, rewards, beta)
        ) == pytest.approx(0, abs=1e-9)
    # Any other policy lies below the frontier: mix the optimum with a worse distribution.
    worse = torch.logaddexp(exact.optimal_logps(ref, rewards, 0.2), ref.flip(-1)) - math.log(2)
    assert exact.frontier_gap(ref, rewards, worse) > 0.01
