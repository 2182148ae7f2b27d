"""The default study (`make demo`): the DPO family against the preferred-FT baseline.

dpo, ipo, kto and orpo at two strengths each and sft, on the built-in sentiment world. The
reference is the world's tiny SFT model; every run logs its trainer's metrics under train/
and the same harness yardstick under eval/ (held-out implicit rewards against the reference,
sampled KL to the reference, gold VADER reward, length) every 20 steps, so the MLflow UI
compares them like with like. After training each run is scored: win rates against the
reference and the chosen responses at five temperatures, judged by a reward model (trained
once on the train pairs and cached) and by the gold reward, and the sentiment world's lm-eval
tasks. sft runs once: beta does not enter its training (it would only rescale its eval/
implicit rewards), so a second strength would train the same policy twice.
"""

from harness import EvalSpec, Experiment, TrainSpec

TRAIN = TrainSpec(steps=80, eval_every=20)  # 80 steps: 9 runs in under 5 minutes on 2 cores
SCORE = EvalSpec(winrate=True, tasks=("world",))


def _experiment(method: str, beta: float) -> Experiment:
    return Experiment(method=method, beta=beta, dataset="sentiment", train=TRAIN, eval=SCORE)


DPO_SENTIMENT = _experiment("dpo", 0.1)

EXPERIMENTS = [
    DPO_SENTIMENT,
    _experiment("dpo", 0.5),
    _experiment("ipo", 0.1),  # IPO tau: a per-token average log-ratio margin 1/(2 tau) = 5 nats
    _experiment("ipo", 0.5),  # ... and 1 nat per token
    _experiment("kto", 0.1),  # TRL's and the KTO paper's default beta
    _experiment("kto", 0.5),
    _experiment("orpo", 0.1),  # ORPO lambda: the paper's 0.1
    _experiment("orpo", 1.0),
    _experiment("sft", 0.1),
]
