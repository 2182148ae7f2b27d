"""The default study (`make demo`): DPO at three strengths on the built-in sentiment world.

The reference is the world's tiny SFT model; each run logs training metrics, the harness's
held-out implicit rewards, a sampled KL to the reference and the gold (VADER) reward of its
samples every 25 steps. After training each run is scored: win rates against the reference
and the chosen responses at five temperatures, judged by a reward model (trained once on the
train pairs and cached) and by the gold reward, and the sentiment world's lm-eval tasks.
"""

from harness import EvalSpec, Experiment, TrainSpec

TRAIN = TrainSpec(steps=100, eval_every=25)
SCORE = EvalSpec(winrate=True, tasks=("world",))

DPO_SENTIMENT = Experiment(
    name="dpo-b0.1", method="dpo", beta=0.1, dataset="sentiment", train=TRAIN, eval=SCORE
)

EXPERIMENTS = [
    DPO_SENTIMENT,
    Experiment(
        name="dpo-b0.03", method="dpo", beta=0.03, dataset="sentiment", train=TRAIN, eval=SCORE
    ),
    Experiment(
        name="dpo-b0.5", method="dpo", beta=0.5, dataset="sentiment", train=TRAIN, eval=SCORE
    ),
]
