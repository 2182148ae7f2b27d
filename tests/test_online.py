"""The online methods (online_dpo, grpo and their gold variants): TRL's losses, as the harness
configures them, held to their papers' formulas on hand-made batches; their settings refused
before any compute; and tiny runs that log the yardstick and train/online/* to MLflow."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from torch.testing import assert_close

from harness import DataSpec, EvalSpec, Experiment, Grid, Sweep, TrainSpec
from harness.commands.cli import main
from harness.config.metrics import (
    EVAL_GOLD_REWARD,
    EVAL_KL,
    TRAIN_COMPLETIONS,
    TRAIN_ONLINE_LENGTH,
    TRAIN_ONLINE_METRICS,
    TRAIN_ONLINE_REWARD,
    TRAIN_ONLINE_TIE_SHARE,
)
from harness.config.space import SweepError
from harness.config.spec import SpecError
from harness.data.preference import PAIRED, DataError, PreferenceData
from harness.data.sequences import encode
from harness.methods.catalog import METHODS
from harness.methods.checks import check_experiment, check_method_accepts, check_sweep
from harness.run.recipe import run_experiment
from tests import tiny

ONLINE = ("online_dpo", "online_dpo_gold", "grpo", "grpo_gold")
GOLD = ("online_dpo_gold", "grpo_gold")


def per_token_logps(model, prompt_ids: list[int], completion_ids: list[int]) -> torch.Tensor:
    """log pi(y_t | x, y_<t) for each completion token, by the test's own forward pass."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logps = model(ids).logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None])
    return logps.squeeze(1)[len(prompt_ids) - 1 :]


# ---- GRPO: DeepSeekMath's objective ------------------------------------------------------------


def test_grpo_loss_is_the_deepseekmath_objective(tmp_path):
    """Shao et al. 2024, eq. 3 with outcome advantages A_i (one per completion):
    loss = -1/G sum_i 1/|o_i| sum_t [min(rho_t A_i, clip(rho_t, 1-eps, 1+eps) A_i)
                                     - beta (pi_ref/pi - log(pi_ref/pi) - 1)],
    rho_t = pi/pi_old, computed here by hand on two completions of one prompt (lengths 3 and 2)
    with old and reference log-probs chosen to put ratios on both sides of the clip range."""
    tokenizer = tiny.word_tokenizer()
    beta, eps = 0.04, 0.2  # DeepSeekMath's beta; TRL's (and the paper's) clip range
    job = tiny.job(tokenizer, tiny.pairs(2), tmp_path, beta=beta, method_args={})
    job.method_args = dict(METHODS.get("grpo_gold").settings) | {"num_generations": 2}
    job.data.gold = lambda prompts, completions: [0.0] * len(completions)
    trainer = METHODS.get("grpo_gold").build(job)
    assert (trainer.args.loss_type, trainer.beta, trainer.args.temperature) == ("grpo", beta, 1.0)
    model = trainer.model.eval()  # no accumulation normaliser; dropout is off either way

    prompt = encode(tokenizer, "the movie was")
    completions = [encode(tokenizer, " great acting") + [tokenizer.eos_token_id]]
    completions.append(encode(tokenizer, " bad") + [tokenizer.eos_token_id])
    lengths = [len(c) for c in completions]  # 3 and 2
    width = max(lengths)
    current = [per_token_logps(model, prompt, c) for c in completions]
    old_shift = [[0.5, 0.0, -0.5], [0.3, -0.3]]  # log pi_old - log pi: rho = e^-0.5, 1, e^0.5 ...
    ref_shift = [[0.2, -0.1, 0.4], [-0.3, 0.1]]  # log pi_ref - log pi
    advantages = [0.8, -0.8]

    def padded(rows):
        return torch.tensor([list(r) + [0.0] * (width - len(r)) for r in rows])

    inputs = {
        "prompt_ids": torch.tensor([prompt, prompt]),
        "prompt_mask": torch.ones(2, len(prompt), dtype=torch.long),
        "completion_ids": torch.tensor([c + [0] * (width - len(c)) for c in completions]),
        "completion_mask": torch.tensor([[1] * n + [0] * (width - n) for n in lengths]),
        "advantages": torch.tensor(advantages),
        "old_per_token_logps": padded(
            [(lp + torch.tensor(s)).tolist() for lp, s in zip(current, old_shift, strict=True)]
        ),
        "ref_per_token_logps": padded(
            [(lp + torch.tensor(s)).tolist() for lp, s in zip(current, ref_shift, strict=True)]
        ),
    }
    loss = trainer._compute_loss(model, inputs)

    objective = 0.0
    for a, olds, refs in zip(advantages, old_shift, ref_shift, strict=True):
        terms = []
        for old, ref in zip(olds, refs, strict=True):
            rho = math.exp(-old)  # pi / pi_old
            clipped = min(max(rho, 1 - eps), 1 + eps)
            kl = math.exp(ref) - ref - 1  # pi_ref/pi - log(pi_ref/pi) - 1
            terms.append(min(rho * a, clipped * a) - beta * kl)
        objective += sum(terms) / len(terms)
    objective /= len(advantages)
    assert_close(loss.item(), -objective, rtol=1e-5, atol=1e-6)
    # the clip binds: without it the value differs
    unclipped = sum(
        sum(math.exp(-o) * a - beta * (math.exp(r) - r - 1) for o, r in zip(os, rs, strict=True))
        / len(os)
        for a, os, rs in zip(advantages, old_shift, ref_shift, strict=True)
    ) / len(advantages)
    assert abs(unclipped - objective) > 1e-2


def test_grpo_advantages_are_the_rewards_normalised_within_each_group(tmp_path):
    """DeepSeekMath's outcome supervision: A_i = (r_i - mean(r)) / std(r) over the G samples of
    one prompt (TRL: Bessel-corrected std, + 1e-4). Group 1 rewards 1, 0, 0.5, 2: mean 0.875,
    std sqrt(2.1875 / 3) = 0.853913; group 2 all 3: A = 0, and it counts in the tie share."""
    tokenizer = tiny.word_tokenizer()
    rows = tiny.pairs(2)
    job = tiny.job(tokenizer, rows, tmp_path, beta=0.04, method_args={})
    job.method_args = {"num_generations": 4, "max_completion_length": 3}
    rewards = [1.0, 0.0, 0.5, 2.0, 3.0, 3.0, 3.0, 3.0]
    job.data.gold = lambda prompts, completions: rewards[: len(completions)]
    job.args["per_device_train_batch_size"] = 8
    trainer = METHODS.get("grpo_gold").build(job)
    trainer.model.train()
    prompts = [rows[0]["prompt"]] * 4 + [rows[1]["prompt"]] * 4  # as TRL's sampler repeats them
    out = trainer._generate_and_score_completions([{"prompt": p} for p in prompts])
    std = math.sqrt((0.125**2 + 0.875**2 + 0.375**2 + 1.125**2) / 3)
    expected = [(r - 0.875) / (std + 1e-4) for r in rewards[:4]] + [0.0] * 4
    assert_close(out["advantages"], torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert trainer._metrics["train"]["frac_reward_zero_std"] == [0.5]


# ---- online DPO: the DPO loss on sampled pairs -------------------------------------------------


def test_online_dpo_loss_is_dpo_on_the_pair_it_sampled(tmp_path):
    """One training step: 2 samples per prompt, ranked by the reward (the first on a tie), and
    loss = mean_x -log sigmoid(beta * ((log pi(y_w) - log pi(y_l)) - (log pi_ref(y_w) -
    log pi_ref(y_l)))), log-probs summed over each sample's tokens through its EOS; the step's
    tie share and mean length are those of the samples the reward saw."""
    tokenizer = tiny.word_tokenizer()
    beta = 0.5
    rows = tiny.pairs(4)  # four 3-word prompts: one length, so no padding shifts positions
    job = tiny.job(tokenizer, rows, tmp_path, beta=beta, method_args={})
    job.method_args = {"max_completion_length": 3}
    job.data.gold = lambda prompts, completions: [float(len(c.split())) for c in completions]
    trainer = METHODS.get("online_dpo_gold").build(job)
    assert (trainer.beta, trainer.args.loss_type, trainer.args.temperature) == (beta, "sigmoid", 1)
    seen = []
    gold = trainer.reward_funcs[0]

    def recording(prompts, completions, completion_ids, **kwargs):
        rewards = gold(prompts, completions, completion_ids, **kwargs)
        seen.extend(zip(prompts, completion_ids, rewards, strict=True))
        return rewards

    trainer.reward_funcs[0] = recording
    torch.manual_seed(0)
    loss = trainer.training_step(trainer.model, {"prompt": [r["prompt"] for r in rows]})

    n = len(rows)
    assert [p for p, _, _ in seen] == [r["prompt"] for r in rows] * 2
    losses, ties = [], []
    for (prompt, first, r1), (_, second, r2) in zip(seen[:n], seen[n:], strict=True):
        chosen, rejected = (first, second) if r1 >= r2 else (second, first)
        ids = encode(tokenizer, prompt)

        def logp(model, completion, ids=ids):
            return per_token_logps(model, ids, list(completion)).sum().item()

        margin = (logp(trainer.model, chosen) - logp(trainer.model, rejected)) - (
            logp(job.reference, chosen) - logp(job.reference, rejected)
        )
        losses.append(-F.logsigmoid(torch.tensor(beta * margin)).item())
        ties.append(float(r1 == r2))
    assert_close(loss.item(), sum(losses) / n, rtol=1e-5, atol=1e-6)
    assert trainer.stats["frac_reward_zero_std"] == [sum(ties) / n]
    lengths = [len(ids) for _, ids, _ in seen]
    assert trainer.stats["completions/mean_length"] == [sum(lengths) / len(lengths)]
    assert all(1 <= k <= 3 for k in lengths)  # cut through the first EOS, not TRL's padding


# ---- bad input, before any compute --------------------------------------------------------------


@pytest.mark.parametrize("method", ONLINE)
@pytest.mark.parametrize("length", [64, 100, 0, 2.5])
def test_a_completion_must_leave_room_in_max_length(method, length):
    exp = Experiment(method=method, beta=0.1, dataset="sentiment")  # train.max_length 64
    with pytest.raises(SpecError, match=r"^method_args.max_completion_length must be .* \(63\)"):
        check_experiment(exp.replace({"method_args.max_completion_length": length}))
    check_experiment(exp.replace({"method_args.max_completion_length": 63}))


@pytest.mark.parametrize("method", ["grpo", "grpo_gold"])
@pytest.mark.parametrize("k", [1, 0, 3])
def test_grpo_needs_whole_groups_of_two_or_more(method, k):
    exp = Experiment(method=method, beta=0.1, dataset="sentiment")  # batch 16
    with pytest.raises(SpecError, match=r"^method_args.num_generations must be >= 2 and divide"):
        check_experiment(exp.replace({"method_args.num_generations": k}))


def test_online_dpo_has_no_group_size_to_set():
    """TRL's OnlineDPOTrainer always samples 2 per prompt: a setting would be a no-op."""
    exp = Experiment(method="online_dpo", beta=0.1, dataset="sentiment")
    with pytest.raises(SpecError, match="has no setting 'num_generations'"):
        check_experiment(exp.replace({"method_args.num_generations": 4}))


@pytest.mark.parametrize("method", GOLD)
def test_gold_variants_refuse_data_without_a_gold_reward(method):
    data = PreferenceData(
        source="pairs.jsonl", format=PAIRED, train=[], eval_pairs=[], eval_prompts=[]
    )
    with pytest.raises(DataError, match=f"method '{method}' needs a gold reward"):
        check_method_accepts(METHODS.get(method), data)


def test_the_command_line_refuses_them_with_one_line_and_exit_2(tmp_path, tracking, capsys):
    rows = tmp_path / "pairs.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in tiny.pairs(20)))
    study = tmp_path / "online_study.py"
    study.write_text(
        textwrap.dedent(f"""
        from harness import Experiment, ModelSpec
        GOLD = Experiment(method="grpo_gold", beta=0.1, dataset={str(rows)!r},
                          model=ModelSpec(name_or_path={str(tmp_path / "no-model")!r}))
        LONG = Experiment(method="online_dpo", beta=0.1, dataset="sentiment")
    """)
    )
    assert main(["run", f"{study}:GOLD", "--tracking-uri", tracking]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'grpo_gold' needs a gold reward" in err[0]
    length = ["--set", "method_args.max_completion_length=64"]
    assert main(["run", f"{study}:LONG", *length, "--tracking-uri", tracking]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "method_args.max_completion_length must be" in err[0]
    assert not MlflowClient(tracking).search_runs(
        [e.experiment_id for e in MlflowClient(tracking).search_experiments()]
    )


# ---- tiny runs, read back from MLflow ----------------------------------------------------------

STEPS, BATCH, LENGTH = 3, 4, 6


def tiny_online(method: str, **method_args) -> Experiment:
    return Experiment(
        method=method,
        beta=0.1,
        dataset="sentiment",
        method_args={"max_completion_length": LENGTH, **method_args},
        data=DataSpec(max_pairs=32),
        train=TrainSpec(
            steps=STEPS, batch_size=BATCH, eval_every=0, log_every=1, save_policy=False
        ),
        eval=EvalSpec(n_prompts=8, n_pairs=4, max_new_tokens=LENGTH),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "method_args", "completions_per_step"),
    [("online_dpo_gold", {}, 2 * BATCH), ("grpo_gold", {"num_generations": 2}, BATCH)],
)
def test_online_runs_log_what_they_sampled(
    method, method_args, completions_per_step, module_tracking
):
    result = run_experiment(tiny_online(method, **method_args), log=lambda _: None)
    client = MlflowClient(module_tracking)
    assert client.get_run(result.run_id).info.status == "FINISHED"

    def history(name):
        return {m.step: m.value for m in client.get_metric_history(result.run_id, name)}

    for name in (EVAL_KL, EVAL_GOLD_REWARD):
        assert sorted(history(name)) == [0, STEPS] and all(
            map(math.isfinite, history(name).values())
        )
    for name in TRAIN_ONLINE_METRICS:
        assert sorted(history(name)) == list(range(1, STEPS + 1)), name
    assert all(1 <= v <= LENGTH for v in history(TRAIN_ONLINE_LENGTH).values())
    assert all(0 <= v <= 1 for v in history(TRAIN_ONLINE_TIE_SHARE).values())
    assert all(math.isfinite(v) for v in history(TRAIN_ONLINE_REWARD).values())
    assert history(TRAIN_COMPLETIONS) == {s: s * completions_per_step for s in range(1, STEPS + 1)}
    tokens = history("train/progress/tokens")
    assert sorted(tokens) == list(range(1, STEPS + 1)) and tokens[1] < tokens[2] < tokens[3]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "method_args"), [("online_dpo_gold", {}), ("grpo_gold", {"num_generations": 2})]
)
def test_online_lora_trains_an_adapter_against_the_disabled_base(
    method, method_args, module_tracking
):
    exp = tiny_online(method, **method_args).replace(
        {"model.lora.r": 8, "train.lr": 5e-3, "train.save_policy": True}
    )
    result = run_experiment(exp, log=lambda _: None)
    client = MlflowClient(module_tracking)
    kl = {m.step: m.value for m in client.get_metric_history(result.run_id, EVAL_KL)}
    assert kl[0] == 0.0  # the reference is the base with the adapter off
    assert kl[STEPS] != 0.0  # the adapter moved the policy
    artifacts = {f.path for f in client.list_artifacts(result.run_id, "policy")}
    assert "policy/adapter_config.json" in artifacts and "policy/model.safetensors" not in artifacts


def test_a_sweep_over_generation_settings_is_checked_value_by_value():
    """Every value of a space over an online method's settings must make a valid experiment."""
    base = Experiment(method="grpo_gold", beta=0.1, dataset="sentiment")  # batch 16
    good = {"method_args.num_generations": Grid([2, 4, 8]), "beta": Grid([0.01, 0.1])}
    check_sweep(Sweep(name="g", base=base, space=good, sampler="grid", n_trials=6, pruner="none"))
    bad = {"method_args.num_generations": Grid([2, 3])}
    with pytest.raises(SweepError, match=r"space\['method_args.num_generations'\] value 3"):
        check_sweep(
            Sweep(name="b", base=base, space=bad, sampler="grid", n_trials=2, pruner="none")
        )
