"""Writes the sentiment world's lm-eval data: `python -m harness.data.tasks.sentiment_items`.

- sentiment_positive_choice: a review prefix "the {subject} {link}" and two continuations that
  differ only in sentiment ("great . the cast was fun ." / "awful . the cast was dull .").
  acc = share of items where the model prefers the positive one. The items are balanced
  against the world's reference model (as HellaSwag filters its items against models): it
  prefers the positive side in exactly half of them, so the reference scores 0.5 and a policy
  aligned towards positive sentiment scores above it.
- sentiment_heldout_ppl: fresh mixed-sentiment reviews from the world's grammar, scored by
  rolling log-likelihood: the alignment tax shows as a rising perplexity.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from harness.data.models import load_causal_lm, load_tokenizer
from harness.data.worlds import get_world
from harness.data.worlds.sentiment import LINKS, NEGATIVE, POSITIVE, SUBJECTS, make_review

FOLDER = Path(__file__).parent / "sentiment"
N_ITEMS = 100
SEED = 20240601  # not the world's seed: no item repeats a training review
MIN_GAP = 0.01  # nats; items the reference nearly ties on could flip with float rounding


def candidate_items(rng: random.Random, n: int) -> list[dict]:
    items = []
    for i in range(n):
        subject, other = rng.choice(SUBJECTS), rng.choice(SUBJECTS)
        link, other_link = rng.choice(LINKS), rng.choice(LINKS)
        first, second = i % len(POSITIVE), rng.randrange(len(POSITIVE))
        pos = f"{POSITIVE[first]} . the {other} {other_link} {POSITIVE[second]} ."
        neg = f"{NEGATIVE[first]} . the {other} {other_link} {NEGATIVE[second]} ."
        label = rng.randrange(2)
        choices = [pos, neg] if label == 0 else [neg, pos]
        items.append({"context": f"the {subject} {link}", "choices": choices, "label": label})
    return items


@torch.no_grad()
def reference_margin(model, tokenizer, item: dict) -> float:
    """log p_ref(positive | context) - log p_ref(negative | context)."""
    totals = []
    for choice in (item["choices"][item["label"]], item["choices"][1 - item["label"]]):
        ids = torch.tensor([tokenizer(f"{item['context']} {choice}")["input_ids"]])
        logps = model(ids).logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None])
        totals.append(logps.sum().item())  # the shared context cancels in the difference
    return totals[0] - totals[1]


def balanced_items(model, tokenizer, rng: random.Random) -> list[dict]:
    """N_ITEMS items, half preferred positive by the reference and half negative."""
    kept: dict[bool, list] = {True: [], False: []}
    for item in candidate_items(rng, 8 * N_ITEMS):
        margin = reference_margin(model, tokenizer, item)
        side = kept[margin > 0]
        if abs(margin) > MIN_GAP and len(side) < N_ITEMS // 2:
            side.append(item)
    return [item for pair in zip(kept[True], kept[False], strict=True) for item in pair]


def write_items() -> None:
    world = get_world("sentiment")
    model = load_causal_lm(world.reference_path).eval()
    tokenizer = load_tokenizer(world.reference_path)
    rng = random.Random(SEED)
    rows = {
        "sentiment_positive_choice.jsonl": balanced_items(model, tokenizer, rng),
        "sentiment_heldout_ppl.jsonl": [{"text": make_review(rng)} for _ in range(N_ITEMS)],
    }
    for name, items in rows.items():
        with open(FOLDER / name, "w") as f:
            f.writelines(json.dumps(item) + "\n" for item in items)


if __name__ == "__main__":
    write_items()
