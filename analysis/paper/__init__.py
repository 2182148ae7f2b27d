"""The paper report (`make paper`): each paper claim set against the harness's measurement.

`experiments/paper` trains the studies into the MLflow experiments named here; `report`
reads them back from MLflow alone (the sweep's importances come from its logged trials), draws
each study's figures, decides every claim by the explicit rules in `claims_*` and writes
results/paper/REPORT.md. The words around each verdict are hand-written in
analysis/paper/claims.toml.
"""

from harness.config.metrics import EVAL_GOLD_REWARD

# MLflow experiment of each study.
SENTIMENT = (
    "paper-sentiment"  # claims 1, 2, 5, 7, 8: reward-KL paths and win rates, sentiment world
)
EXACT = "paper-exact"  # claims 4, 10: the optimal frontier, online DPO; exact world
DETERMINISTIC = "paper-deterministic"  # claim 3: DPO vs IPO on few deterministic pairs
SWEEP = "paper-sweep"  # claim 6: method x beta grid, an Optuna study
STUDIES = (SENTIMENT, EXACT, DETERMINISTIC, SWEEP)
SWEEP_OBJECTIVE = EVAL_GOLD_REWARD  # what the sweep maximises
