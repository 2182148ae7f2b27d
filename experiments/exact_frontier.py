"""Every method against the optimal reward-KL frontier of the exact world, at several strengths.

The exact world enumerates every response, so each run logs its exact KL to the reference
(`eval/kl_exact`), its exact expected gold reward (`eval/gold/reward_exact`) and how far below
the best reachable reward at that KL it is (`eval/frontier_gap`), every 50 steps; the frontier
curve itself is each run's `frontier/optimal_frontier.csv`. Labels are Bradley-Terry draws at
temperature 0.5 on all ~3900 sampled pairs, so DPO's population optimum at beta is the
frontier point at beta_frontier = 0.5 * beta.

`beta` means each method's own strength (see `harness methods`).

Measured (seed 0, CPU, 300 steps), exact KL / gap at the end: DPO 1.86 / 0.61, 0.93 / 0.35,
0.15 / 0.12 at beta 0.1, 0.3, 1; IPO 1.82 / 0.43, 0.52 / 0.26, 0.08 / 0.09; rDPO (eps 0.1)
1.95 / 0.60, 1.28 / 0.44, 0.24 / 0.15 (measured when `cdpo` still ran TRL's robust loss);
cDPO (eps 0.1) 1.74 / 0.59, 0.58 / 0.26, 0.09 / 0.09; SLiC 2.17 / 0.47, 1.15 / 0.39, 0.16 / 0.13. At beta 1 every gap
shrinks after step 50 (DPO 0.19 -> 0.12); at beta 0.1 it grows as the KL does (DPO 0.41 -> 0.61).
Three seeds of six of these methods at beta 0.1 and 1, with intervals: results/paper/REPORT.md
(claim 4, `make paper`).
"""

from harness import DataSpec, EvalSpec, Experiment, TrainSpec

STUDY_METHODS = ("dpo", "ipo", "cdpo", "rdpo", "slic", "kto", "orpo", "simpo", "sft", "rloo")
BETAS = (0.1, 0.3, 1.0)
DATA = DataSpec(labels="bradley_terry", bt_temperature=0.5)
# lr 2e-4: at 5e-4 DPO with beta <= 0.3 sends a quarter of its mass to invalid outputs.
TRAIN = TrainSpec(steps=300, lr=2e-4, batch_size=16, eval_every=50, log_every=10)
# max_new_tokens = L + 1 is the world's outcome space; 256 samples give the sampled KL's error bars.
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
    )
    for method in STUDY_METHODS
    for beta in (BETAS if method != "sft" else BETAS[:1])  # SFT has no strength to vary
]
