"""What `make paper` trains: four studies, every experiment with each of three seeds.

Each study reuses a study module's settings:

- paper-sentiment (claims 1, 2, 5, 7, 8, 9): experiments/sentiment_frontier.py's methods and
  strengths at 150 steps (DPO at five betas, for the over-optimisation fit) plus KTO at beta
  0.1 (at twice DPO's batch: the same completions per step), online DPO (reward model and
  gold reward) at two betas and best-of-n picked by the gold reward at n = 1, 2, 4, 8, 16
  (nothing trains), every run scored by the gold judge at five temperatures on 64 prompts.
- paper-exact (claims 4, 10): experiments/exact_frontier.py (300 steps), six methods at its
  smallest and largest beta, and online DPO at the same two betas.
- paper-deterministic (claim 3): experiments/ipo_overfitting.py as it is (800 steps).
- paper-sweep (claim 6): a method x beta grid (4 x 3) of 100-step trials, as
  experiments/beta_sweep.py's space but with every cell and seed trained.

Sizes: chosen from per-run CPU times measured on the project's 2-core machine (sentiment
DPO-family run 19 s, RLOO run 36 s, exact-world run 16 s, deterministic run 22 s, sweep trial
run 14 s) to keep the whole report under an hour. Measured: the first full `make paper` (129
runs) took 30.3 min wall-clock; results/paper/REPORT.md states the time of every invocation.
"""

from __future__ import annotations

import dataclasses

from analysis.paper import DETERMINISTIC, EXACT, SENTIMENT, SWEEP, SWEEP_OBJECTIVE
from experiments import exact_frontier, ipo_overfitting
from harness import EvalSpec, Experiment, Grid, Sweep, TrainSpec

SEEDS = (0, 1, 2)

# ---- paper-sentiment ------------------------------------------------------------------------
SENTIMENT_TRAIN = TrainSpec(steps=150, eval_every=25, save_policy=False)
# Gold judge only: the reward-model judge would add one more learned reward to the comparison.
SENTIMENT_EVAL = EvalSpec(winrate=True, judges=("gold",))
SENTIMENT_RUNS = {  # method -> betas, on one scale (see experiments/sentiment_frontier.py)
    "dpo": (0.01, 0.03, 0.1, 0.3, 1.0),
    "rloo": (0.1, 1.0, 5.0),
    "rloo_gold": (0.01, 0.1, 0.5),  # = bt_temperature 0.1 x rloo's betas: the same targets
    "sft": (0.1,),  # beta only scales its eval/ implicit rewards
    "kto": (0.1,),  # claim 7: against dpo at 0.1
    # online against offline: DPO's scale (the reward only ranks each sampled pair)
    "online_dpo": (0.1, 0.3),
    "online_dpo_gold": (0.1, 0.3),
}
# Best-of-n with the gold reward picking (nothing trains): claim 1's reference curve and claim 9.
SENTIMENT_BEST_OF_N = (1, 2, 4, 8, 16)

# ---- paper-exact ----------------------------------------------------------------------------
EXACT_METHODS = ("dpo", "ipo", "cdpo", "slic", "kto", "orpo")
EXACT_BETAS = (0.1, 1.0)  # the ends of exact_frontier.BETAS: claim 4 compares them
EXACT_TRAIN = dataclasses.replace(exact_frontier.TRAIN, save_policy=False)
# Claim 10, online against offline with exact KL: online DPO (ranked by a reward model trained
# on the same pairs) beside the study's DPO, sampling the world's whole outcome (L + 1 tokens).
EXACT_ONLINE = {"online_dpo": {"max_completion_length": exact_frontier.EVAL.max_new_tokens}}

# ---- paper-deterministic --------------------------------------------------------------------
DETERMINISTIC_TRAIN = dataclasses.replace(ipo_overfitting.TRAIN, save_policy=False)

# ---- paper-sweep ----------------------------------------------------------------------------
SWEEP_METHODS = ("dpo", "ipo", "kto", "orpo")
SWEEP_BETAS = (0.01, 0.1, 1.0)
SWEEP_TRAIN = TrainSpec(steps=100, eval_every=50, save_policy=False)


# Claim 7, like with like: a DPO row is a pair (two completions), a KTO row one, so KTO gets
# twice the batch to see DPO's completions per step (train/progress/completions logs both).
SENTIMENT_KTO_TRAIN = dataclasses.replace(
    SENTIMENT_TRAIN, batch_size=2 * SENTIMENT_TRAIN.batch_size
)


def sentiment() -> list[Experiment]:
    return [
        Experiment(
            method=method,
            beta=beta,
            dataset="sentiment",
            train=SENTIMENT_KTO_TRAIN if method == "kto" else SENTIMENT_TRAIN,
            eval=SENTIMENT_EVAL,
        )
        for method, betas in SENTIMENT_RUNS.items()
        for beta in betas
    ] + [
        Experiment(
            method="bon_gold",
            beta=0.1,  # unused by best-of-n
            dataset="sentiment",
            name=f"bon_gold-n{n}",  # the n, not the unused beta, tells the runs apart
            method_args={"n": n},
            train=SENTIMENT_TRAIN,
            eval=SENTIMENT_EVAL,
        )
        for n in SENTIMENT_BEST_OF_N
    ]


def exact() -> list[Experiment]:
    offline = [
        dataclasses.replace(exp, train=EXACT_TRAIN)
        for exp in exact_frontier.EXPERIMENTS
        if exp.method in EXACT_METHODS and exp.beta in EXACT_BETAS
    ]
    online = [
        exp.replace(
            {f"method_args.{key}": value for key, value in method_args.items()},
            method=method,
            name=f"{method}-b{exp.beta:g}",
        )
        for method, method_args in EXACT_ONLINE.items()
        for exp in offline
        if exp.method == "dpo"
    ]
    return offline + online


def deterministic() -> list[Experiment]:
    return [
        dataclasses.replace(exp, train=DETERMINISTIC_TRAIN) for exp in ipo_overfitting.EXPERIMENTS
    ]


STUDIES = {SENTIMENT: sentiment, EXACT: exact, DETERMINISTIC: deterministic}


def seeded(exp: Experiment, seed: int) -> Experiment:
    """One seed of an experiment; the seed is in the run name, so seeds are separate runs."""
    return exp.replace({"train.seed": seed, "name": f"{exp.name}-s{seed}"})


def sweep(seeds: tuple[int, ...] = SEEDS) -> Sweep:
    grid = {"method": Grid(SWEEP_METHODS), "beta": Grid(SWEEP_BETAS)}
    return Sweep(
        name=SWEEP,
        base=Experiment(method="dpo", beta=0.1, dataset="sentiment", train=SWEEP_TRAIN),
        space=grid,
        objective=SWEEP_OBJECTIVE,
        n_trials=len(SWEEP_METHODS) * len(SWEEP_BETAS),
        seeds=seeds,
        sampler="grid",
        pruner="none",  # every cell with every seed: the claim compares them all
    )
