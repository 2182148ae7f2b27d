"""Conservative DPO (Mitchell 2023) and robust DPO (Chowdhury et al. 2024): closed-form values
and gradients, and TRL's trainer, as the harness configures it, held to those formulas."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from harness.config.spec import DataSpec, Experiment
from harness.data.models import load_causal_lm, load_tokenizer
from harness.data.sequences import tokenize_completion
from harness.data.worlds import get_world
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


@pytest.fixture(scope="module")
def sentiment_batch():
    """Eight of the sentiment world's train pairs and its reference model (as the policy)."""
    world = get_world("sentiment")
    rows = world.pairs("train", DataSpec())[0][:8]
    return rows, load_tokenizer(world.reference_path), world.reference_path


@pytest.mark.slow
def test_orpo_sft_term_is_the_papers_completion_only_nll(sentiment_batch, tmp_path):
    """ORPO (Hong et al. 2024): L = mean over pairs of L_SFT + lambda L_OR, with
    L_SFT = -(1/m) sum_t log pi(y_w,t | x, y_w,<t) over the m chosen completion tokens (eq. 2),
    L_OR = -log sigmoid(log odds(y_w|x) - log odds(y_l|x)), odds = P / (1 - P) and log P the
    per-token mean log-prob of the completion (eq. 4-7). The trainer's loss, its gradient in every
    weight and its logged nll_loss and log-odds equal those, computed from our own forward pass."""
    rows, tokenizer, reference_path = sentiment_batch
    lam = 0.5
    job = tiny.job(tokenizer, rows, tmp_path, beta=lam, method_args={})
    job = dataclasses.replace(job, policy=load_causal_lm(reference_path).eval())
    trainer = METHODS.get("orpo").build(job)
    batch = next(iter(trainer.get_train_dataloader()))
    loss, logged = trainer.get_batch_loss_metrics(trainer.model, batch)
    loss.backward()
    trl_grads = [p.grad.clone() for p in job.policy.parameters()]
    job.policy.zero_grad()

    def mean_logp(row, side):  # (1/m) sum_t log pi(y_t | x, y_<t) over the completion
        prompt_ids, completion_ids = tokenize_completion(tokenizer, row["prompt"], row[side])
        return tiny.completion_logps(job.policy, tokenizer, prompt_ids, completion_ids) / len(
            completion_ids
        )

    chosen = torch.stack([mean_logp(r, "chosen") for r in rows])
    rejected = torch.stack([mean_logp(r, "rejected") for r in rows])
    sft = -chosen.mean()
    log_odds = (chosen - torch.log1p(-chosen.exp())) - (rejected - torch.log1p(-rejected.exp()))
    odds_ratio = -F.logsigmoid(log_odds)
    ours = sft + lam * odds_ratio.mean()
    ours.backward()
    assert_close(loss, ours, rtol=1e-5, atol=1e-5)
    for trl_grad, p in zip(trl_grads, job.policy.parameters(), strict=True):
        assert_close(trl_grad, p.grad, rtol=1e-4, atol=1e-6)
    assert logged["nll_loss"] == pytest.approx(sft.item(), abs=1e-5)
    # The odds-ratio term is TRL's, unchanged: its logged mean log sigmoid and log odds.
    assert logged["log_odds_ratio"] == pytest.approx(-odds_ratio.mean().item(), abs=1e-5)
    assert logged["log_odds_chosen"] == pytest.approx(log_odds.mean().item(), abs=1e-5)

    # TRL's own NLL, every attended token after the first (prompt and completion) in one mean,
    # is another number on this batch (measured 1.760 against 1.581): the test tells them apart.
    with torch.no_grad():
        total, count = 0.0, 0
        for row in rows:
            ids = sum(tokenize_completion(tokenizer, row["prompt"], row["chosen"]), [])
            full = tiny.completion_logps(job.policy, tokenizer, ids[:1], ids[1:])
            total, count = total + full.item(), count + len(ids) - 1
    assert abs(-total / count - sft.item()) > 0.05
