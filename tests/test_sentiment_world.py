"""The sentiment world: its gold reward is VADER, its data and models build once and load by path."""

import random

import pytest
import torch
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from harness import DataSpec, Experiment
from harness.data.models import load_causal_lm, load_tokenizer
from harness.data.preference import load_preference_data, world_data
from harness.data.sequences import sequence_logps, tokenize_completion
from harness.data.worlds import get_world
from harness.data.worlds.sentiment import SentimentWorld, make_review, split_prompts, vader_scores

SENTENCES = {
    "the movie was really great .": "positive",
    "the plot was terrible and boring .": "negative",
    "the film was long .": "neutral",
    "the acting was not bad .": "positive",  # VADER reads the negation
}


@pytest.fixture(scope="module")
def world():
    return get_world("sentiment")


def test_gold_reward_is_vader_compound():
    analyzer = SentimentIntensityAnalyzer()
    expected = [analyzer.polarity_scores(s)["compound"] for s in SENTENCES]
    assert vader_scores(list(SENTENCES)) == expected
    for score, polarity in zip(expected, SENTENCES.values(), strict=True):
        assert {"positive": score > 0.05, "negative": score < -0.05, "neutral": score == 0.0}[
            polarity
        ]


def test_reviews_use_real_words_with_mixed_sentiment():
    rng = random.Random(1)
    scores = vader_scores([make_review(rng) for _ in range(300)])
    assert min(scores) < -0.5 and max(scores) > 0.5
    assert 0.2 < sum(s > 0 for s in scores) / len(scores) < 0.8


def test_split_prompts_are_distinct_and_disjoint():
    rng = random.Random(0)
    train, held_out = split_prompts(rng, (300, 100))
    assert len(set(train)) == 300 and len(set(held_out)) == 100
    assert not set(train) & set(held_out)


def test_a_world_lives_in_the_cache_folder_of_the_moment(tmp_path, monkeypatch):
    """One world object per $HARNESS_CACHE: a later change of it is followed, not frozen at
    the first use (nothing is built: the folder is found only when first read)."""
    first = get_world("sentiment")
    assert get_world("sentiment") is first
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    elsewhere = get_world("sentiment")
    assert elsewhere is not first and get_world("sentiment") is elsewhere
    monkeypatch.undo()
    assert get_world("sentiment") is first


@pytest.mark.slow  # builds the sentiment world
def test_held_out_prompts_are_never_trained_on(world):
    """Pairs, KL and gold-reward prompts: none appears in the train split (version 1 shared
    98 of 128 held-out pair prompts and 48 of the first 64 KL prompts with it)."""
    data = load_preference_data(Experiment(method="dpo", beta=0.1, dataset="sentiment"))
    train_prompts = {row["prompt"] for row in data.train}
    assert not {row["prompt"] for row in data.eval_pairs} & train_prompts
    assert not set(data.eval_prompts) & train_prompts
    assert len(set(data.eval_prompts)) == len(data.eval_prompts) == 128


@pytest.mark.slow  # builds the sentiment world
def test_world_provides_splits_pairs_and_a_reference(world):
    prompts = {split: world.prompts(split) for split in ("train", "eval")}
    assert [len(p) for p in prompts.values()] == [512, 128]
    pairs, filtered = world.pairs("train", DataSpec())
    assert len(pairs) + sum(filtered.values()) == 512 * 2
    deterministic, _ = world.pairs("train", DataSpec(labels="deterministic"))
    chosen_gold = world.gold_reward([], [p["chosen"] for p in deterministic])
    rejected_gold = world.gold_reward([], [p["rejected"] for p in deterministic])
    assert all(c > r for c, r in zip(chosen_gold, rejected_gold, strict=True))
    # Bradley-Terry labels at T=0.1 disagree with the deterministic ones on some pairs: noise.
    flips = sum(a != b for a, b in zip(pairs, deterministic, strict=True))
    assert 0 < flips < len(pairs) / 3


@pytest.mark.slow  # builds the sentiment world
def test_reference_loads_by_path_and_is_fluent(world):
    tokenizer = load_tokenizer(world.reference_path)
    model = load_causal_lm(world.reference_path)
    assert 3e5 < sum(p.numel() for p in model.parameters()) < 3e6
    prompt, completion = tokenize_completion(tokenizer, "the movie was", " really great .")
    assert tokenizer.convert_ids_to_tokens(completion) == ["really", "great", ".", "</s>"]
    # the SFT model prefers its grammar to the same words scrambled
    good = sequence_logps(model, [prompt], [completion], tokenizer.pad_token_id)
    _, scrambled = tokenize_completion(tokenizer, "the movie was", " . great really")
    bad = sequence_logps(model, [prompt], [scrambled], tokenizer.pad_token_id)
    assert good.item() > bad.item() + 3


@pytest.mark.slow  # builds the sentiment world
def test_sequence_logps_is_the_sum_of_token_log_probs(world):
    tokenizer = load_tokenizer(world.reference_path)
    model = load_causal_lm(world.reference_path)
    prompt, completion = tokenize_completion(tokenizer, "the plot", " was dull .")
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0].log_softmax(-1)
    by_hand = sum(logits[len(prompt) - 1 + i, tok].item() for i, tok in enumerate(completion))
    # batched with a longer, padded row beside it: padding must not change the result
    other_prompt, other = tokenize_completion(
        tokenizer, "the film was very", " good and fun . i liked the cast ."
    )
    batched = sequence_logps(
        model, [prompt, other_prompt], [completion, other], tokenizer.pad_token_id
    )
    torch.testing.assert_close(batched[0].item(), by_hand, atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # two tiny worlds and judges: 7 s
def test_the_world_and_its_judge_are_the_same_built_on_one_torch_thread_or_two(
    tmp_path, monkeypatch
):
    """torch splits a sum by its thread count, so a model trained on 2 threads rounds unlike one
    trained on 1. The cached reference model and reward model are built on one thread: whoever
    builds them first (the tests on one thread, `make demo` on every core, another machine), a
    run reads the same ones."""
    from harness.infra.cache import file_digest
    from harness.methods.reward_model import reward_model_for
    from tests.faults.test_cache import TINY_WORLD

    before = torch.get_num_threads()
    built = []
    for threads in (1, 2):
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / f"threads-{threads}"))
        torch.set_num_threads(threads)
        try:
            world = SentimentWorld(TINY_WORLD)
            data = world_data("tiny", world, DataSpec(labels="deterministic"))
            judge = reward_model_for(data, backbone="world", log=lambda line: None)
            assert torch.get_num_threads() == threads, "the caller's thread count is restored"
        finally:
            torch.set_num_threads(before)
        built.append(
            {
                "reference": file_digest(world.reference_path / "model.safetensors"),
                "judge": file_digest(judge.path / "model.safetensors"),
                "judge accuracy": judge.accuracy,
            }
        )
    assert built[0] == built[1]
