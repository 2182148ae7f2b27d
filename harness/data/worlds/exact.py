"""The `exact` world: responses few enough to enumerate, so KL, reward and the optimum are exact.

Eight words (four colours, four animals), prompts of two words ("red fox"), responses of 1 to
L = 4 words: 4680 valid responses per prompt, and the invalid outcomes (EOS first, no EOS after
4 words) that complete the space (see `harness.data.worlds.exact_math`). The vocabulary is the eight
words and EOS, which also pads, so no other token exists. Sampling uses exactly L + 1 new
tokens (`eval.max_new_tokens` = 5), which makes the sampled `eval/kl` an unbiased estimate of
`eval/kl_exact`. The reference is a tiny GPT-2 SFT'd (TRL's SFTTrainer) on responses from a
base distribution that ignores the gold reward; preference pairs are sampled from the
reference's exact distribution (conditioned on a valid response) and labelled by `DataSpec`.
Every split uses the same eight prompts: this world asks how well a method optimises the
KL-regularised objective, not how it generalises to new prompts; the splits differ in their
sampled responses, and a held-out pair that repeats a train pair is dropped (11 of 256). Most
held-out responses were also trained on (in other pairings); `new_pairs` are pairs of
responses no train row holds, scored as `eval/new/...`.

Every run logs the exact KL(pi || pi_ref), the exact expected gold reward, the invalid mass and
the frontier gap (optimal reward at the policy's KL minus its reward), and saves the optimal
frontier as `frontier/optimal_frontier.csv`. The gold reward is in units where a
Bradley-Terry temperature (`data.bt_temperature`) of about 0.5 gives noisy labels; the default
0.1, set for the sentiment world's [-1, 1], labels almost deterministically here.
"""

from __future__ import annotations

import itertools
import json
import random
import weakref
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from harness.config.metrics import (
    EVAL_FRONTIER_GAP,
    EVAL_GOLD_REWARD_EXACT,
    EVAL_INVALID_EXACT,
    EVAL_KL_EXACT,
    EVAL_NEW_PAIR_METRICS,
)
from harness.config.spec import DataSpec, SpecError
from harness.data.models import load_causal_lm, load_tokenizer
from harness.data.sequences import encode
from harness.data.worlds import exact_math as exact
from harness.data.worlds.base import SPLITS, CachedWorld, label_pairs
from harness.data.worlds.sft import SFTSchedule, sft_tiny_model

COLOURS = ("red", "blue", "green", "gold")
ANIMALS = ("cat", "dog", "fox", "owl")
WORDS = COLOURS + ANIMALS
# Each colour and each animal twice, so no word is favoured across the prompt set.
PROMPTS = (
    "red fox",
    "red owl",
    "blue cat",
    "blue fox",
    "green dog",
    "green cat",
    "gold owl",
    "gold dog",
)
# Below every valid response: the lowest, "cat cat cat cat" to a fox, earns -2.9.
INVALID_REWARD = -3.0
EOS = "</s>"
FRONTIER_BETAS = [10 ** (k / 10) for k in range(-20, 21)]  # 0.01 .. 100, 10 points per decade


def gold_reward_of(prompt: str, response: tuple[str, ...] | None) -> float:
    """The gold reward r(x, y) of response words y = (y_1..y_n) to prompt x = "c a" (colour, animal).

        r = 1.0 [a in y]                          topic: names the prompt's animal
          + 0.5 [y_t = c and y_t+1 = a, some t]   describes it: the prompt's colour right before it
          - 0.5 #{t > 1: y_t = y_t-1}             repetition
          - 0.25 #{t: y_t an animal other than a} off-topic animals
          - 0.1 n                                 brevity

    The best response to every prompt is its own "c a" (r = 1.3); "a" alone earns 0.9,
    "c a" plus a colour 1.2. An invalid response (None: not 1..L known words) earns INVALID_REWARD.
    """
    if response is None:
        return INVALID_REWARD
    colour, animal = prompt.split()
    pairs = list(zip(response, response[1:], strict=False))
    return (
        1.0 * (animal in response)
        + 0.5 * ((colour, animal) in pairs)
        - 0.5 * sum(a == b for a, b in pairs)
        - 0.25 * sum(w in ANIMALS and w != animal for w in response)
        - 0.1 * len(response)
    )


def parse_response(text: str, max_words: int) -> tuple[str, ...] | None:
    """The response's words, or None (invalid) unless it is 1..max_words words of the vocabulary."""
    words = tuple(text.split())
    ok = 1 <= len(words) <= max_words and all(w in WORDS for w in words)
    return words if ok else None


@dataclass(frozen=True)
class ExactSettings:
    """Everything the world's cache key depends on."""

    max_words: int = 4  # L: 8 + 64 + 512 + 4096 = 4680 valid responses per prompt
    # Base distribution the reference imitates: length, then each word copies a prompt word,
    # repeats the previous word, or is uniform. It knows nothing of the gold reward.
    length_probs: tuple[float, ...] = (0.2, 0.35, 0.3, 0.15)
    p_copy_prompt: float = 0.2
    p_repeat: float = 0.15
    n_embd: int = 64  # 0.1M parameters: every evaluation runs the model on 37k prefixes
    n_layer: int = 2
    sft_texts: int = 9600
    # 2 epochs of 32-text batches: the reference then stops after 4 words (invalid mass < 1%).
    sft_steps: int = 600
    sft_lr: float = 2e-3
    samples_per_prompt: tuple[int, int] = (1024, 64)  # train, eval: 2 per pair
    seed: int = 0
    # bump when the generator changes so stale caches are not reused; 3: the reference model's
    # GELU is torch's fused kernel (the same function, rounded differently); 4: the reference is
    # trained on one CPU thread (harness.infra.devices.one_cpu_thread)
    version: int = 4


def base_response(rng: random.Random, prompt: str, s: ExactSettings) -> tuple[str, ...]:
    """One response from the base distribution (see `ExactSettings`)."""
    length = rng.choices(range(1, s.max_words + 1), weights=s.length_probs)[0]
    words: list[str] = []
    for _ in range(length):
        u = rng.random()
        if u < s.p_copy_prompt:
            words.append(rng.choice(prompt.split()))
        elif u < s.p_copy_prompt + s.p_repeat and words:
            words.append(words[-1])
        else:
            words.append(rng.choice(WORDS))
    return tuple(words)


def response_text(words: tuple[str, ...]) -> str:
    """A response as the samples store it: its words after one space."""
    return " " + " ".join(words)


def word_tokenizer():
    """Word-level tokenizer over WORDS with EOS as the only special token (it also pads)."""
    raw = Tokenizer(models.WordLevel({EOS: 0, **{w: i + 1 for i, w in enumerate(WORDS)}}))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.add_special_tokens([EOS])
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=EOS, pad_token=EOS)


class ExactWorld(CachedWorld):
    name = "exact"
    extra_metrics = (
        EVAL_KL_EXACT,
        EVAL_GOLD_REWARD_EXACT,
        EVAL_FRONTIER_GAP,
        EVAL_INVALID_EXACT,
        *EVAL_NEW_PAIR_METRICS,
    )

    def __init__(self, settings: ExactSettings | None = None):
        self.settings = settings or ExactSettings()
        self.responses = [
            tuple(WORDS[i] for i in r)
            for r in exact.response_tree(len(WORDS), self.settings.max_words)
        ]
        self._reference_logps = weakref.WeakKeyDictionary()  # frozen reference -> its outcome table

    def prompts(self, split: str) -> list[str]:
        """The eight prompts cycled 128 times: any first n of them weighs the prompts evenly."""
        return list(PROMPTS) * 128

    def gold_reward(self, prompts: list[str], completions: list[str]) -> list[float]:
        L = self.settings.max_words
        return [
            gold_reward_of(p, parse_response(c, L))
            for p, c in zip(prompts, completions, strict=True)
        ]

    @cached_property
    def rewards(self) -> torch.Tensor:
        """r(x, y) for every prompt and outcome (valid responses, then invalid ones), float64."""
        valid = [[gold_reward_of(p, y) for y in self.responses] for p in PROMPTS]
        n_invalid = 1 + len(WORDS) ** (self.settings.max_words + 1)
        return torch.tensor(
            [row + [INVALID_REWARD] * n_invalid for row in valid], dtype=torch.float64
        )

    def outcome_logps(self, model, tokenizer) -> torch.Tensor:
        """log pi of every outcome (`harness.data.worlds.exact_math` order) for every prompt, float64."""
        word_ids = tokenizer.convert_tokens_to_ids(list(WORDS))
        prompt_ids = [encode(tokenizer, p) for p in PROMPTS]
        next_logps = exact.next_token_logps(model, prompt_ids, word_ids, self.settings.max_words)
        return exact.outcome_logps(next_logps, word_ids, tokenizer.eos_token_id)

    def extra_eval(self, policy, reference, tokenizer) -> dict[str, float]:
        """eval/kl_exact, eval/gold/reward_exact, eval/frontier_gap and eval/invalid_exact."""
        ref_logps = self._frozen_logps(reference, tokenizer)
        if policy is reference:  # the step-0 evaluation: the enumeration already made
            return self._exact_metrics(ref_logps, ref_logps)
        return self._exact_metrics(self.outcome_logps(policy, tokenizer), ref_logps)

    def best_of_n_eval(self, reference, tokenizer, picker, n: int) -> dict[str, float]:
        """The same metrics for best-of-n over `reference` (harness.evaluate.best_of_n), from its
        exact distribution: the picker scores every outcome's text, as the sampler would."""
        texts = self.outcome_texts()
        picked = torch.tensor(
            [picker([p] * len(texts), texts) for p in PROMPTS], dtype=torch.float64
        )
        ref_logps = self._frozen_logps(reference, tokenizer)
        return self._exact_metrics(exact.best_of_n_logps(ref_logps, picked, n), ref_logps)

    def outcome_texts(self) -> list[str]:
        """Every outcome (module order) as the completion text the sampler decodes: the words
        after a space, "" for EOS first, the L + 1 words of an overflow."""
        overflows = itertools.product(WORDS, repeat=self.settings.max_words + 1)
        texts = [" " + " ".join(r) for r in self.responses] + [""]
        return texts + [" " + " ".join(r) for r in overflows]

    def _frozen_logps(self, reference, tokenizer) -> torch.Tensor:
        if reference not in self._reference_logps:  # the reference is frozen: enumerate it once
            self._reference_logps[reference] = self.outcome_logps(reference, tokenizer)
        return self._reference_logps[reference]

    def _exact_metrics(self, logps: torch.Tensor, ref_logps: torch.Tensor) -> dict[str, float]:
        return {
            EVAL_KL_EXACT: exact.kl_divergence(logps, ref_logps).mean().item(),
            EVAL_GOLD_REWARD_EXACT: exact.expected_reward(logps, self.rewards).mean().item(),
            EVAL_FRONTIER_GAP: exact.frontier_gap(ref_logps, self.rewards, logps),
            EVAL_INVALID_EXACT: self.invalid_mass(logps),
        }

    def defaults(self) -> dict[str, object]:
        return {"eval.max_new_tokens": self.settings.max_words + 1}

    def check(self, exp) -> None:
        """Refuse settings that break exactness (eval.max_new_tokens=None takes the one valid)."""
        L = self.settings.max_words
        if exp.eval.max_new_tokens not in (None, L + 1):
            raise SpecError(
                f"eval.max_new_tokens must be {L + 1} in the exact world (responses of up to {L} "
                "words and their EOS: the outcomes the exact KL sums over, so the sampled KL "
                f"estimates the same quantity), got {exp.eval.max_new_tokens}"
            )
        if exp.model.name_or_path != "world":
            raise SpecError(
                "model.name_or_path must be 'world' in the exact world: its enumeration is over "
                f"the world's own 9-token vocabulary, got {exp.model.name_or_path!r}"
            )

    def run_artifacts(self) -> dict[str, str]:
        """The optimal frontier of the world's reference."""
        return {"frontier/optimal_frontier.csv": (self.folder / "optimal_frontier.csv").read_text()}

    def invalid_mass(self, logps: torch.Tensor) -> float:
        """pi(invalid | x) averaged over prompts."""
        return exact.invalid_logp(logps, len(self.responses)).exp().mean().item()

    def _build(self, out: Path) -> None:
        s = self.settings
        rng = random.Random(s.seed)
        texts = []
        for _ in range(s.sft_texts):
            prompt = rng.choice(PROMPTS)
            texts.append(f"{prompt} {' '.join(base_response(rng, prompt, s))}")
        tokenizer = word_tokenizer()
        print(f"  exact: SFT of the reference on {len(texts)} base responses ...")
        model = sft_tiny_model(
            tokenizer,
            texts,
            SFTSchedule(steps=s.sft_steps, lr=s.sft_lr, seed=s.seed),
            out=out / "sft_run",
            n_embd=s.n_embd,
            n_layer=s.n_layer,
        )
        model.save_pretrained(out / "reference")
        tokenizer.save_pretrained(out / "reference")
        ref_logps = self.outcome_logps(model, tokenizer)
        for split, n in zip(SPLITS, s.samples_per_prompt, strict=True):
            rows = self._sample_rows(ref_logps, n, seed=s.seed + SPLITS.index(split))
            with open(out / f"samples_{split}.jsonl", "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        points = exact.frontier(ref_logps, self.rewards, FRONTIER_BETAS)
        lines = ["beta,kl,reward"] + [f"{b:.6g},{kl:.8g},{r:.8g}" for b, kl, r in points]
        (out / "optimal_frontier.csv").write_text("\n".join(lines) + "\n")
        summary = {
            "reference_reward": exact.expected_reward(ref_logps, self.rewards).mean().item(),
            "reference_invalid": self.invalid_mass(ref_logps),
            "max_reward": self.rewards.max(1).values.mean().item(),
            "argmax_kl": points[0][1],
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"  exact: {json.dumps(summary)}")

    def new_pairs(self, data: DataSpec) -> list[dict]:
        """As many pairs as the eval split has, sampled from pi_ref given a valid response that
        no train row holds for that prompt (about 30% of pi_ref's mass), labelled as `data` says."""
        pairs, _ = label_pairs(self.new_samples, data, seed=len(SPLITS))
        return pairs

    @cached_property
    def new_samples(self) -> list[dict]:
        """Rows like `scored_samples`, drawn afresh (not cached on disk, so the world's cache
        key and files stay as they were): the reference's enumeration takes under a second."""
        s = self.settings
        reference = self.reference_path
        logps = self.outcome_logps(load_causal_lm(reference), load_tokenizer(reference))
        trained = self.trained_responses()
        for i, prompt in enumerate(PROMPTS):
            seen = [j for j, y in enumerate(self.responses) if response_text(y) in trained[prompt]]
            logps[i, seen] = -torch.inf
        return self._sample_rows(logps, s.samples_per_prompt[1], seed=s.seed + len(SPLITS))

    def _sample_rows(self, ref_logps: torch.Tensor, n: int, seed: int) -> list[dict]:
        """n responses per prompt from pi_ref given a valid response, two per row.

        Rows cycle through the prompts (one row per prompt per round), so `data.max_pairs`
        keeps the prompts balanced however small it is.
        """
        generator = torch.Generator().manual_seed(seed)
        valid = ref_logps[:, : len(self.responses)].exp()
        draws = torch.multinomial(valid, n, replacement=True, generator=generator)
        rows = []
        for k in range(0, n - 1, 2):
            for i, prompt in enumerate(PROMPTS):
                pair = [response_text(self.responses[j]) for j in draws[i, k : k + 2].tolist()]
                rows.append(
                    {
                        "prompt": prompt,
                        "completions": pair,
                        "rewards": self.gold_reward([prompt] * 2, pair),
                    }
                )
        return rows
