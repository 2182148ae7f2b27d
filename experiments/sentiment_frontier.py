"""The DPO paper's Figure 2 (left) in miniature: gold reward against KL to the reference.

Rafailov et al. (2023, sec. 6.1) trace, for each method and strength, the (KL, reward) points a
run passes through. Here each run is evaluated every 20 steps, so it draws a path in
(eval/kl, eval/gold/reward); the frontier is the upper-left envelope of all paths.

Strengths on one scale: the world labels a pair with P(a > b) = sigmoid((r_a - r_b) / T),
T = data.bt_temperature = 0.1, so the reward DPO and a reward model recover is r / T, and DPO
at beta targets pi_ref * exp(r / (T beta)). rloo (reward model, also on the r / T scale) takes
the same betas; rloo_gold sees r itself, so its beta = T * (DPO's beta) for the same target.
"""

from harness import Experiment, TrainSpec

TRAIN = TrainSpec(steps=200, eval_every=20)


def _experiment(method: str, beta: float) -> Experiment:
    return Experiment(method=method, beta=beta, dataset="sentiment", train=TRAIN)


DPO = [_experiment("dpo", beta) for beta in (0.05, 0.1, 1.0, 5.0)]
RLOO = [_experiment("rloo", beta) for beta in (0.1, 1.0, 5.0)]
RLOO_GOLD = [_experiment("rloo_gold", beta) for beta in (0.01, 0.1, 0.5)]  # = T * (0.1, 1, 5)
SFT = [_experiment("sft", 0.1)]  # beta only scales its eval/ implicit rewards

EXPERIMENTS = DPO + RLOO + RLOO_GOLD + SFT
