"""The `exact` world: gold reward, enumeration against TRL-style scoring, data and refusals."""

from __future__ import annotations

import random

import pytest
import torch

from harness.config.spec import DataSpec, EvalSpec, Experiment, SpecError
from harness.data.models import load_causal_lm, load_tokenizer
from harness.data.preference import load_preference_data
from harness.data.sequences import sequence_logps, tokenize_completion
from harness.data.worlds import get_world
from harness.data.worlds.exact import PROMPTS, WORDS, gold_reward_of, parse_response
from harness.methods.checks import check_experiment


def test_gold_reward_by_hand():
    assert gold_reward_of("red fox", ("red", "fox")) == pytest.approx(1.0 + 0.5 - 0.2)
    assert gold_reward_of("red fox", ("fox",)) == pytest.approx(1.0 - 0.1)
    assert gold_reward_of("red fox", ("fox", "fox")) == pytest.approx(1.0 - 0.5 - 0.2)
    assert gold_reward_of("red fox", ("cat", "dog", "red", "fox")) == pytest.approx(1.5 - 0.5 - 0.4)
    assert gold_reward_of("red fox", ("fox", "red")) == pytest.approx(1.0 - 0.2)  # wrong order
    assert gold_reward_of("red fox", None) == -3.0
    assert parse_response(" red fox", 4) == ("red", "fox")
    assert parse_response("", 4) is None
    assert parse_response("red fox red fox red", 4) is None
    assert parse_response("red zebra", 4) is None


@pytest.fixture(scope="module")
def world():
    return get_world("exact")


@pytest.fixture(scope="module")
def reference(world):
    return load_causal_lm(world.reference_path), load_tokenizer(world.reference_path)


def test_every_prompts_best_response_is_its_colour_then_animal(world):
    best = world.rewards[:, : len(world.responses)].argmax(-1)
    assert [" ".join(world.responses[i]) for i in best] == list(PROMPTS)
    assert world.rewards.shape == (8, 4680 + 1 + 8**5)


@pytest.mark.slow
def test_enumeration_sums_to_one_and_matches_trl_style_scoring(world, reference):
    """log pi of responses, EOS-first and overflows equal harness.data.sequences' (TRL's) sums."""
    model, tokenizer = reference
    logps = world.outcome_logps(model, tokenizer)
    torch.testing.assert_close(logps.exp().sum(-1), torch.ones(8, dtype=torch.float64))
    rng = random.Random(0)
    n_valid, eos = len(world.responses), tokenizer.eos_token_id
    word_ids = tokenizer.convert_tokens_to_ids(list(WORDS))
    prompts, completions, expected = [], [], []
    for i in [
        *rng.sample(range(n_valid), 40),
        n_valid,
        *rng.sample(range(n_valid + 1, logps.shape[1]), 20),
    ]:
        x = rng.randrange(8)
        prompt_ids = tokenizer(PROMPTS[x], add_special_tokens=False)["input_ids"]
        if i < n_valid:  # tokenized exactly as TRL does: prompt + completion + EOS
            prompt_ids, ids = tokenize_completion(
                tokenizer, PROMPTS[x], " " + " ".join(world.responses[i])
            )
        elif i == n_valid:
            ids = [eos]
        else:  # overflow k: 4-word prefix k // 8 followed by word k % 8
            k = i - n_valid - 1
            prefix = world.responses[8 + 64 + 512 + k // 8]
            ids = tokenizer.convert_tokens_to_ids(list(prefix)) + [word_ids[k % 8]]
        prompts.append(prompt_ids)
        completions.append(ids)
        expected.append(logps[x, i].item())
    scored = sequence_logps(model, prompts, completions, tokenizer.pad_token_id).double()
    torch.testing.assert_close(
        scored, torch.tensor(expected, dtype=torch.float64), atol=1e-5, rtol=0
    )


@pytest.mark.slow
def test_pairs_cover_every_prompt_under_a_small_cap(world):
    exp = Experiment(
        method="dpo", beta=0.1, dataset="exact", data=DataSpec(labels="deterministic", max_pairs=16)
    )
    data = load_preference_data(exp)
    assert len(data.train) == 16
    assert {row["prompt"] for row in data.train} == set(PROMPTS)
    for row in data.train:
        chosen, rejected = (
            world.gold_reward([row["prompt"]], [row[k]])[0] for k in ("chosen", "rejected")
        )
        assert chosen > rejected
    assert data.eval_prompts[:16] == list(PROMPTS) * 2


@pytest.mark.slow
def test_held_out_pairs_are_new_response_pairs(world):
    """The eight prompts are shared by design; a held-out pair is a pair of responses no train
    pair has (the eval split sampled a few train pairs again: they are dropped)."""
    train, _ = world.pairs("train", DataSpec())
    held_out, filtered = world.pairs("eval", DataSpec())

    def key(row):
        return row["prompt"], frozenset((row["chosen"], row["rejected"]))

    assert not {key(r) for r in held_out} & {key(r) for r in train}
    assert filtered["in_train"] > 0
    assert len(held_out) + sum(filtered.values()) == 8 * 64 // 2


@pytest.mark.slow
def test_new_pairs_share_no_response_with_any_train_pair(world):
    """eval/new/... is scored on pairs of responses that no train row holds for their prompt,
    while most of the ordinary held-out pairs reuse trained responses (what it is there for)."""
    trained: dict[str, set[str]] = {}
    for row in world.pairs("train", DataSpec(labels="deterministic"))[0]:
        trained.setdefault(row["prompt"], set()).update((row["chosen"], row["rejected"]))
    new = world.new_pairs(DataSpec())
    assert len(new) > 200 and {row["prompt"] for row in new[:8]} == set(PROMPTS)
    assert not [r for r in new if {r["chosen"], r["rejected"]} & trained[r["prompt"]]]
    for row in new[:32]:  # labelled by the gold reward like every other pair
        gold = world.gold_reward([row["prompt"]] * 2, [row["chosen"], row["rejected"]])
        assert gold[0] > gold[1]
    held_out, _ = world.pairs("eval", DataSpec())
    reused = [r for r in held_out if {r["chosen"], r["rejected"]} & trained[r["prompt"]]]
    assert len(reused) > len(held_out) / 2  # measured: 64 of the first 128 reuse both responses


def test_settings_that_break_exactness_are_refused_before_the_world_is_built():
    base = Experiment(method="dpo", beta=0.1, dataset="exact", eval=EvalSpec(max_new_tokens=5))
    check_experiment(base)
    with pytest.raises(SpecError, match="eval.max_new_tokens must be 5"):
        check_experiment(base.replace({"eval.max_new_tokens": 24}))
    with pytest.raises(SpecError, match="model.name_or_path"):
        check_experiment(base.replace({"model.name_or_path": "gpt2"}))


@pytest.mark.slow
def test_every_run_gets_the_optimal_frontier(world):
    frontier = world.run_artifacts()["frontier/optimal_frontier.csv"]
    assert frontier.splitlines()[0] == "beta,kl,reward"
