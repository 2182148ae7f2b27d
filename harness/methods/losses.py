"""Preference losses the harness defines itself, as small pure functions with their equations.

TRL 1.16 computes every DPO-family loss inside one `DPOTrainer._compute_loss`, with no per-loss
hook; what it does offer is a weighted sum of its losses (`loss_type` list + `loss_weights`).
Conservative DPO is such a sum exactly (`conservative_dpo_mixture`), so TRL computes, logs and
caches it as any of its own losses, and the functions here are the reference the tests hold
TRL's numbers to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conservative_dpo_loss(margins: torch.Tensor, beta: float, eps: float) -> torch.Tensor:
    """cDPO (Mitchell 2023, "A note on DPO with noisy preferences"), per pair, shape like `margins`.

        L(h) = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)

    h = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)), summed over the
    response tokens. DPO's loss with labels flipped with probability eps; dL/dh =
    beta (eps - sigmoid(-beta h)) vanishes at h* = log((1 - eps) / eps) / beta and is positive
    beyond it, so the margin is pulled back to h* instead of growing without bound.
    """
    return -(1 - eps) * F.logsigmoid(beta * margins) - eps * F.logsigmoid(-beta * margins)


def robust_dpo_loss(margins: torch.Tensor, beta: float, eps: float) -> torch.Tensor:
    """rDPO (Chowdhury et al. 2024, eq. 12), TRL's `robust` loss, per pair.

        L(h) = [-(1 - eps) log sigmoid(beta h) + eps log sigmoid(-beta h)] / (1 - 2 eps)

    An unbiased estimate of the clean-label DPO loss under flip rate eps < 1/2; it equals
    -log sigmoid(beta h) - eps beta h / (1 - 2 eps), decreasing in h everywhere (no optimum).
    """
    clean = -(1 - eps) * F.logsigmoid(beta * margins)
    flipped = eps * F.logsigmoid(-beta * margins)
    return (clean + flipped) / (1 - 2 * eps)


def conservative_dpo_mixture(eps: float) -> tuple[list[str], list[float]]:
    """cDPO as TRL's losses: (loss_type, loss_weights) with `label_smoothing = eps`, 0 <= eps < 1/2.

    With a = -log sigmoid(beta h) (TRL's `sigmoid`) and log sigmoid(-x) = log sigmoid(x) - x:
    cDPO = a + eps beta h and rDPO = a - eps beta h / (1 - 2 eps), so
    cDPO = 2 (1 - eps) a - (1 - 2 eps) rDPO.
    """
    if not 0 <= eps < 0.5:
        raise ValueError(f"the flip rate must be in [0, 0.5), got {eps}")
    return ["sigmoid", "robust"], [2 * (1 - eps), -(1 - 2 * eps)]
