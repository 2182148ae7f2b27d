"""Closed-form checks of the quantities the harness computes itself."""

import math

import torch
from torch.testing import assert_close

from harness.evaluate.stats import implicit_rewards, kl_estimate, pair_reward_metrics


def test_implicit_rewards_by_hand():
    # r = beta * (log pi - log pi_ref): 0.5 * (-1 - -3) = 1.0 and 0.5 * (-4 - -2) = -1.0
    rewards = implicit_rewards(torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -2.0]), beta=0.5)
    assert_close(rewards, torch.tensor([1.0, -1.0]))


def test_pair_metrics_by_hand():
    chosen, rejected = torch.tensor([1.0, 0.0, 2.0, 0.5]), torch.tensor([0.0, 0.0, 3.0, -0.5])
    metrics = pair_reward_metrics(chosen, rejected)
    assert metrics["chosen"] == 0.875 and metrics["rejected"] == 0.625
    assert metrics["margins"] == 0.25  # (1 + 0 - 1 + 1) / 4
    assert metrics["accuracies"] == 0.625  # win, tie (half), loss, win: 2.5 / 4


def test_pair_accuracy_of_the_reference_itself_is_chance():
    rewards = implicit_rewards(torch.tensor([-3.0, -7.5]), torch.tensor([-3.0, -7.5]), beta=0.1)
    assert pair_reward_metrics(rewards, rewards)["accuracies"] == 0.5


def test_kl_estimate_matches_closed_form_categorical_kl():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    q = torch.tensor([0.25, 0.25, 0.25, 0.25])
    exact = (p * (p / q).log()).sum().item()  # 0.2269 nats
    torch.manual_seed(0)
    draws = torch.multinomial(p, 20000, replacement=True)
    estimate, stderr = kl_estimate(p.log()[draws], q.log()[draws])
    assert abs(estimate - exact) < 4 * stderr
    # stderr = sd(log p/q under p) / sqrt(n), the sd also in closed form
    ratio = (p / q).log()
    sd = math.sqrt((p * (ratio - exact) ** 2).sum().item())
    assert abs(stderr - sd / math.sqrt(20000)) < 0.05 * stderr


def test_kl_of_identical_policies_is_zero():
    logps = torch.tensor([-3.0, -1.5, -2.2])
    assert kl_estimate(logps, logps) == (0.0, 0.0)
