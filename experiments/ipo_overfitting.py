"""IPO against DPO on few deterministic preferences (Azar et al. 2023, sections 4.2 and 5.3).

With preferences that are always the same way round, DPO's loss keeps falling as the rejected
responses' log-ratios go to minus infinity, whatever beta is: the KL regulariser is no brake.
IPO instead regresses the log-ratio margin onto 1/(2 tau), so its KL settles at a value that
tau sets. 32 pairs (4 per prompt), labelled by the gold reward without noise, constant learning
rate and long training; the exact world logs the exact KL every 50 steps.
"""

from harness import DataSpec, EvalSpec, Experiment, TrainSpec

BETAS = (0.1, 0.3, 1.0)
DATA = DataSpec(labels="deterministic", max_pairs=32)
# Constant lr: a decaying schedule would stop DPO's drift by itself and hide the effect.
TRAIN = TrainSpec(steps=600, lr=5e-4, lr_scheduler="constant", batch_size=16, eval_every=50,
                  log_every=10)  # fmt: skip
EVAL = EvalSpec(n_prompts=256, n_pairs=128, max_new_tokens=5)

EXPERIMENTS = [
    Experiment(
        name=f"{method}-b{beta:g}",
        method=method,
        beta=beta,
        dataset="exact",
        data=DATA,
        train=TRAIN,
        eval=EVAL,
    )  # fmt: skip
    for method in ("dpo", "ipo")
    for beta in BETAS
]
