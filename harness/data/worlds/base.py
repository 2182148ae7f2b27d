"""What a built-in world provides: a reference model, preference pairs, prompts and a gold reward."""

from __future__ import annotations

import json
import math
import random
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import asdict
from functools import cached_property
from pathlib import Path

from harness.config.spec import DataSpec
from harness.infra.cache import cached_dir
from harness.infra.devices import one_cpu_thread

SPLITS = ("train", "eval")


class World(ABC):
    """A self-contained task built offline: data, tokenizer, reference model and gold reward."""

    name: str
    extra_metrics: tuple[str, ...] = ()  # the names `extra_eval` and `new_pairs` add

    @property
    @abstractmethod
    def reference_path(self) -> Path:
        """Folder holding the reference (SFT) model and its tokenizer, loadable by path."""

    @abstractmethod
    def prompts(self, split: str) -> list[str]: ...

    @abstractmethod
    def scored_samples(self, split: str) -> list[dict]:
        """Rows {prompt, completions: [str], rewards: [float]} sampled from the reference."""

    @abstractmethod
    def gold_reward(self, prompts: list[str], completions: list[str]) -> list[float]: ...

    def extra_eval(self, policy, reference, tokenizer) -> dict[str, float]:
        """Metrics only this world can compute (e.g. exact KL); none by default. `policy` is
        `reference` itself for the step-0 evaluation (the same weights)."""
        return {}

    def best_of_n_eval(self, reference, tokenizer, picker, n: int) -> dict[str, float]:
        """`extra_eval`'s metrics for the best of n reference samples by `picker`
        (harness.evaluate.best_of_n), where this world can compute them; none by default."""
        return {}

    def defaults(self) -> dict[str, object]:
        """{dotted field: value} for fields left at None where this world allows one value."""
        return {}

    def check(self, exp) -> None:  # noqa: B027  (most worlds accept every setting)
        """Raise SpecError for settings this world cannot evaluate exactly; none by default."""

    def run_artifacts(self) -> dict[str, str]:
        """Text artifacts (artifact path -> content) logged at the start of every run in this world."""
        return {}

    def pairs(self, split: str, data: DataSpec) -> tuple[list[dict], Counter]:
        """Preference pairs labelled as `data` says, and the count of what was filtered and why.

        A held-out pair whose two responses to its prompt also form a train pair is dropped
        (counted as `in_train`): a world with few prompts (exact) can sample one twice.
        """
        pairs, filtered = label_pairs(self.scored_samples(split), data, seed=SPLITS.index(split))
        if split == SPLITS[0]:
            return pairs, filtered
        trained = {
            (row["prompt"], frozenset(row["completions"][i : i + 2]))
            for row in self.scored_samples(SPLITS[0])
            for i in range(0, len(row["completions"]) - 1, 2)
        }
        kept = [
            p
            for p in pairs
            if (p["prompt"], frozenset((p["chosen"], p["rejected"]))) not in trained
        ]
        filtered["in_train"] += len(pairs) - len(kept)
        return kept, filtered

    def new_pairs(self, data: DataSpec) -> list[dict]:
        """Held-out pairs neither of whose responses is a train response, labelled as `data`
        says (scored as `eval/new/...`); none by default: a world with held-out prompts of its
        own (sentiment) has no trained response among its held-out pairs to begin with."""
        return []

    def trained_responses(self) -> dict[str, set[str]]:
        """{prompt: every response of the train split to it}, filtered pairs included."""
        trained: dict[str, set[str]] = {}
        for row in self.scored_samples(SPLITS[0]):
            trained.setdefault(row["prompt"], set()).update(row["completions"])
        return trained


class CachedWorld(World):
    """A world built once by `_build(folder)` into results/cache/worlds/{name}/{settings key}/.

    The folder holds `reference/` (model and tokenizer) and `samples_{split}.jsonl` (rows of
    reference samples with their gold rewards); `self.settings` is a dataclass of everything
    the build depends on.
    """

    settings: object

    @abstractmethod
    def _build(self, out: Path) -> None: ...

    @cached_property
    def folder(self) -> Path:
        def build(out: Path) -> None:
            with one_cpu_thread():  # the same reference model from any machine or thread setting
                self._build(out)

        return cached_dir(f"worlds/{self.name}", asdict(self.settings), build)

    @property
    def reference_path(self) -> Path:
        return self.folder / "reference"

    def scored_samples(self, split: str) -> list[dict]:
        with open(self.folder / f"samples_{split}.jsonl") as f:
            return [json.loads(line) for line in f]


def label_pairs(rows: list[dict], data: DataSpec, seed: int) -> tuple[list[dict], Counter]:
    """Pair consecutive samples of each prompt and label each pair from the gold reward.

    Bradley-Terry: P(a preferred to b) = sigmoid((r_a - r_b) / T) (Bradley & Terry 1952), with
    T = data.bt_temperature; deterministic: the higher reward wins. Pairs with equal text or
    equal reward carry no preference and are filtered, counted under their reason.
    """
    rng = random.Random(seed)
    pairs, filtered = [], Counter()
    for row in rows:
        texts, rewards = row["completions"], row["rewards"]
        for i in range(0, len(texts) - 1, 2):
            (a, ra), (b, rb) = (texts[i], rewards[i]), (texts[i + 1], rewards[i + 1])
            draw = rng.random()  # drawn for every pair so filtering never shifts later labels
            if a == b:
                filtered["identical_completions"] += 1
                continue
            if ra == rb:
                filtered["tied_reward"] += 1
                continue
            if data.labels == "deterministic":
                a_wins = ra > rb
            else:
                a_wins = draw < 1 / (1 + math.exp(-(ra - rb) / data.bt_temperature))
            chosen, rejected = (a, b) if a_wins else (b, a)
            pairs.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected})
    return pairs, filtered
