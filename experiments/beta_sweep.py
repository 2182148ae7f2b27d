"""Which method and beta give the most gold reward on the sentiment world? (`harness sweep`)

TPE over method, beta and learning rate, two seeds per trial; the median pruner stops trials
whose gold reward trails at an evaluation. Each trial's seeds are nested MLflow runs under
the study's parent run; the study lives in results/optuna.db and resumes when rerun.
"""

from harness import Choice, Experiment, LogUniform, Sweep, TrainSpec

BETA_SWEEP = Sweep(
    name="sentiment-beta",
    base=Experiment(
        method="dpo", beta=0.1, dataset="sentiment", train=TrainSpec(steps=100, eval_every=25)
    ),
    space={
        "method": Choice(["dpo", "ipo", "kto", "orpo"]),
        "beta": LogUniform(0.01, 1.0),
        "train.lr": LogUniform(1e-5, 1e-3),
    },
    objective="eval/gold/reward",
    direction="maximize",
    n_trials=24,
    seeds=(0, 1),
)
