"""Best-of-n's reward-KL curve on the sentiment world (`harness sweep`), the reference curve of
the frontier figure: `bon_gold` and `bon` at n = 1, 2, 4, ..., 128, one trial per (method, n).

Nothing trains: each trial samples n completions per held-out prompt from the reference and
keeps the one the gold reward (`bon_gold`) or the reward model trained on the pairs (`bon`)
scores highest. Its eval/kl is the analytic bound log n - (n-1)/n (tag `eval_kl`), so
`harness figures` draws the trials as a line ordered by n beside the trained methods' fronts.
"""

from harness import EvalSpec, Experiment, Grid, Sweep

NS = tuple(2**k for k in range(8))  # 1 .. 128

BEST_OF_N_SWEEP = Sweep(
    name="sentiment-best-of-n",
    base=Experiment(
        method="bon_gold", beta=0.1, dataset="sentiment", eval=EvalSpec(winrate=True)
    ),  # beta is unused by best-of-n
    space={"method": Grid(["bon_gold", "bon"]), "method_args.n": Grid(list(NS))},
    objective="eval/gold/reward",
    direction="maximize",
    n_trials=2 * len(NS),
    sampler="grid",
)
