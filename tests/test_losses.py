"""Conservative DPO (Mitchell 2023) and robust DPO (Chowdhury et al. 2024): closed-form values
and gradients, and TRL's trainer, as the harness configures it, held to those formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from harness.config.spec import Experiment
from harness.data.sequences import tokenize_completion
from harness.methods.catalog import METHODS, resolved_args
from harness.methods.losses import conservative_dpo_loss, conservative_dpo_mixture, robust_dpo_loss
from tests import tiny

H_STAR = 10 * math.log(9)  # cDPO's optimum at eps 0.1, beta 0.1: log((1-eps)/eps)/beta = 21.97


def value_and_slope(loss, h: float, beta: float = 0.1, eps: float = 0.1) -> tuple[float, float]:
    margin = torch.tensor(h, dtype=torch.float64, requires_grad=True)
    value = loss(margin, beta, eps)
    value.backward()
    return value.item(), margin.grad.item()


def test_cdpo_value_and_gradient_by_hand():
    # h = 0: L = -(0.9 + 0.1) log(1/2) = log 2; dL/dh = beta (eps - sigmoid(0)) = 0.1 (0.1 - 0.5)
    assert_close(value_and_slope(conservative_dpo_loss, 0.0), (math.log(2), -0.04))
    # h* = 21.97: sigmoid(beta h*) = 0.9, so L = -0.9 log 0.9 - 0.1 log 0.1 = 0.3251 and dL/dh = 0
    value, slope = value_and_slope(conservative_dpo_loss, H_STAR)
    assert_close(value, -0.9 * math.log(0.9) - 0.1 * math.log(0.1))
    assert abs(slope) < 1e-12
    # h = 40: dL/dh = 0.1 (0.1 - sigmoid(-4)) = 0.1 (0.1 - 0.017986) = +0.0082: pulled back to h*
    value, slope = value_and_slope(conservative_dpo_loss, 40.0)
    assert_close(
        value, -0.9 * math.log(1 / (1 + math.exp(-4))) - 0.1 * math.log(1 / (1 + math.exp(4)))
    )
    assert_close(slope, 0.1 * (0.1 - 1 / (1 + math.exp(4))))
    assert slope > 0
    # just below the optimum the gradient is negative: the sign changes at h*
    assert value_and_slope(conservative_dpo_loss, H_STAR - 1)[1] < 0


def test_rdpo_value_and_gradient_by_hand():
    # rDPO = -log sigmoid(beta h) - eps beta h / (1 - 2 eps): at h = 0, log 2 and slope
    # -0.1 * 0.5 - 0.1 * 0.1 / 0.8 = -0.0625; at h = 40, log(1 + e^-4) - 0.5 = -0.48185 and slope
    # -0.1 sigmoid(-4) - 0.0125 = -0.0143: never zero, the margin is pushed up without bound.
    assert_close(value_and_slope(robust_dpo_loss, 0.0), (math.log(2), -0.0625))
    value, slope = value_and_slope(robust_dpo_loss, 40.0)
    assert_close(value, math.log(1 + math.exp(-4)) - 0.5)
    assert_close(slope, -0.1 / (1 + math.exp(4)) - 0.0125)
    assert value_and_slope(robust_dpo_loss, H_STAR)[1] < 0


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.45])
def test_cdpo_is_trl_losses_weighted(eps):
    """The identity the cdpo builder relies on: 2(1-eps) sigmoid - (1-2eps) robust = cDPO."""
    h = torch.linspace(-60, 60, 25, dtype=torch.float64)
    names, weights = conservative_dpo_mixture(eps)
    assert names == ["sigmoid", "robust"]
    mixed = weights[0] * -F.logsigmoid(0.3 * h) + weights[1] * robust_dpo_loss(h, 0.3, eps)
    assert_close(mixed, conservative_dpo_loss(h, 0.3, eps))


def test_flip_rate_outside_its_range_is_refused():
    with pytest.raises(ValueError, match=r"flip rate must be in \[0, 0.5\)"):
        conservative_dpo_mixture(0.5)
    for method in ("cdpo", "rdpo"):
        exp = Experiment(method=method, beta=0.1, dataset="sentiment")
        assert METHODS.get(method).validate(exp) is None
        bad = exp.replace({"method_args.label_smoothing": 0.5})
        assert "method_args.label_smoothing must be a flip rate in [0, 0.5)" in (
            METHODS.get(method).validate(bad)
        )


@pytest.mark.parametrize(
    ("method", "formula", "other"),
    [
        ("cdpo", conservative_dpo_loss, robust_dpo_loss),
        ("rdpo", robust_dpo_loss, conservative_dpo_loss),
    ],
)
def test_trl_loss_equals_the_formula(method, formula, other, tmp_path):
    """The registry's trainer on 8 real pairs: TRL's loss and its gradient in every weight equal
    the paper's formula applied to log-probs from a forward pass of our own."""
    tokenizer, rows = tiny.word_tokenizer(), tiny.pairs(8)
    beta, eps = 2.0, 0.2  # beta h of order 1: the two losses differ by eps beta h (1 + 1/(1-2eps))
    exp = Experiment(
        method=method, beta=beta, dataset="sentiment", method_args={"label_smoothing": eps}
    )
    job = tiny.job(tokenizer, rows, tmp_path, beta=beta, method_args=resolved_args(exp))
    trainer = METHODS.get(method).build(job)
    batch = next(iter(trainer.get_train_dataloader()))
    trl_loss = trainer.compute_loss(trainer.model, batch)
    trl_loss.backward()
    trl_grads = [p.grad.clone() for p in job.policy.parameters()]
    job.policy.zero_grad()

    def logratio(row, side):
        ids = tokenize_completion(tokenizer, row["prompt"], row[side])
        with torch.no_grad():
            ref = tiny.completion_logps(job.reference, tokenizer, *ids)
        return tiny.completion_logps(job.policy, tokenizer, *ids) - ref

    h = torch.stack([logratio(r, "chosen") - logratio(r, "rejected") for r in rows])
    ours = formula(h, beta, eps).mean()
    ours.backward()
    assert_close(trl_loss, ours, rtol=1e-5, atol=1e-5)
    for trl_grad, p in zip(trl_grads, job.policy.parameters(), strict=True):
        assert_close(trl_grad, p.grad, rtol=1e-4, atol=1e-5)
    # ... and not the other loss: the test can tell them apart at this batch
    assert abs(trl_loss.item() - other(h.detach(), beta, eps).mean().item()) > 1e-2


@pytest.mark.parametrize(
    ("beta", "method_args", "gamma"),
    [
        (2.0, {}, 1.0),  # the paper's Llama-3-Base setting: gamma/beta 0.5
        (0.1, {}, 0.05),  # gamma follows beta: gamma/beta stays 0.5
        (0.3, {"gamma_beta_ratio": 1.0}, 0.3),
        (0.3, {"gamma": 1.4}, 1.4),  # an explicit gamma wins over the ratio
    ],
)
def test_simpo_margin_follows_beta(beta, method_args, gamma, tmp_path):
    exp = Experiment(method="simpo", beta=beta, dataset="sentiment", method_args=method_args)
    job = tiny.job(
        tiny.word_tokenizer(), tiny.pairs(2), tmp_path, beta=beta, method_args=resolved_args(exp)
    )
    trainer = METHODS.get("simpo").build(job)
    assert trainer.args.simpo_gamma == pytest.approx(gamma)
    assert trainer.args.beta == beta


def test_simpo_margin_settings_are_checked():
    exp = Experiment(method="simpo", beta=0.1, dataset="sentiment")
    problem = METHODS.get("simpo").validate(exp.replace({"method_args.gamma_beta_ratio": -1}))
    assert "method_args.gamma_beta_ratio must be a number >= 0" in problem
