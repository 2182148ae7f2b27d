"""The `sentiment` world: an offline miniature of the DPO paper's IMDb task.

Rafailov et al. (2023, sec. 6.1) fine-tune GPT-2 on IMDb reviews, prompt it with review
prefixes and score completions with a sentiment classifier as gold reward. Here the reviews
come from a small grammar over real English words, the model is a tiny GPT-2 SFT'd on them
with TRL's SFTTrainer, and the gold reward is VADER's compound sentiment score of the
completion (Hutto & Gilbert 2014), in [-1, 1].
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from tokenizers.trainers import WordLevelTrainer
from transformers import PreTrainedTokenizerFast
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from harness.data.sequences import Sampling, sample_completions
from harness.data.worlds.base import SPLITS, CachedWorld
from harness.data.worlds.sft import SFTSchedule, sft_tiny_model

SUBJECTS = [
    "movie",
    "film",
    "story",
    "plot",
    "acting",
    "cast",
    "script",
    "ending",
    "music",
    "dialogue",
    "director",
    "pacing",
    "characters",
    "scenes",
    "camera",
    "lead",
]
LINKS = ["was", "is", "felt", "seemed"]
INTENSIFIERS = ["really", "very", "quite", "so", "truly", "rather", "somewhat", "pretty"]
POSITIVE = [
    "great",
    "wonderful",
    "excellent",
    "brilliant",
    "beautiful",
    "good",
    "fun",
    "amazing",
    "lovely",
    "perfect",
    "charming",
    "enjoyable",
    "superb",
    "delightful",
]
NEGATIVE = [
    "bad",
    "terrible",
    "awful",
    "boring",
    "dull",
    "horrible",
    "weak",
    "poor",
    "disappointing",
    "stupid",
    "ugly",
    "painful",
    "mediocre",
    "annoying",
]
NEUTRAL = [
    "long",
    "slow",
    "simple",
    "strange",
    "quiet",
    "dark",
    "short",
    "loud",
    "familiar",
    "different",
    "old",
    "serious",
]
FEELINGS = {
    "pos": ["loved", "liked", "enjoyed", "admired"],
    "neg": ["hated", "disliked"],
    "neu": ["watched", "noticed", "remember", "saw"],
}
VERDICTS = {
    "pos": ["i would recommend it", "worth watching", "a must see"],
    "neg": ["i would not recommend it", "a waste of time", "avoid it"],
    "neu": ["see it yourself", "it is what it is", "judge for yourself"],
}
ADJECTIVES = {"pos": POSITIVE, "neg": NEGATIVE, "neu": NEUTRAL}


@dataclass(frozen=True)
class SentimentSettings:
    """Everything the world's cache key depends on."""

    n_reviews: int = 6000
    n_prompts: tuple[int, int] = (512, 128)  # train, eval
    samples_per_prompt: int = 4  # completions sampled per prompt, paired (0,1), (2,3)
    max_new_tokens: int = 24
    sft_steps: int = 400  # 400 x 32 reviews: fluent grammar with the corpus' mixed sentiment
    sft_lr: float = 2e-3
    seed: int = 0
    # bump when the generator changes so stale caches are not reused; 2: prompts distinct and
    # disjoint between splits (version 1 shared 95 of its 128 eval prompts with train); 3: the
    # reference model's GELU is torch's fused kernel (the same function, rounded differently);
    # 4: the reference is trained on one CPU thread (harness.infra.devices.one_cpu_thread)
    version: int = 4


def _sentence(rng: random.Random, mood: str) -> str:
    subject, link, adj = rng.choice(SUBJECTS), rng.choice(LINKS), rng.choice(ADJECTIVES[mood])
    intensifier = rng.choice(INTENSIFIERS) + " " if rng.random() < 0.5 else ""
    kind = rng.random()
    if kind < 0.45:
        return f"the {subject} {link} {intensifier}{adj} ."
    if kind < 0.6:
        other = rng.choice(ADJECTIVES[mood])
        return f"the {subject} {link} {adj} and {other} ."
    if kind < 0.75:
        return f"i {rng.choice(FEELINGS[mood])} the {subject} ."
    if kind < 0.85:  # negation flips the surface word's sentiment (VADER handles "not")
        flipped = {"pos": "neg", "neg": "pos", "neu": "neu"}[mood]
        return f"the {subject} {link} not {rng.choice(ADJECTIVES[flipped])} ."
    return f"overall , {rng.choice(VERDICTS[mood])} ."


def make_review(rng: random.Random) -> str:
    """A 2-4 sentence review whose sentences follow a latent mixture of moods."""
    p_pos = rng.choice([0.15, 0.5, 0.85])
    moods = [
        "neu" if rng.random() < 0.2 else ("pos" if rng.random() < p_pos else "neg")
        for _ in range(rng.randint(2, 4))
    ]
    return " ".join(_sentence(rng, m) for m in moods)


def make_prompt(rng: random.Random, review: str) -> str:
    """A review prefix of 2-4 words, as the IMDb task prompts with review prefixes."""
    return " ".join(review.split()[: rng.randint(2, 4)])


def split_prompts(rng: random.Random, counts: tuple[int, ...]) -> list[list[str]]:
    """Prompts for each split, distinct and disjoint: held-out prompts are never trained on.

    Prefixes repeat often (there are 16 "the {subject}" prompts), so prompts are drawn until
    sum(counts) distinct ones exist, shuffled, and cut in split order: every split is a sample
    from the same distribution over distinct prompts.
    """
    needed, prompts, draws = sum(counts), {}, 0
    while len(prompts) < needed:
        if draws == 100 * needed:
            raise ValueError(f"the review grammar yields fewer than {needed} distinct prompts")
        prompts.setdefault(make_prompt(rng, make_review(rng)), None)
        draws += 1
    pool = list(prompts)
    rng.shuffle(pool)
    starts = [sum(counts[:i]) for i in range(len(counts) + 1)]
    return [pool[a:b] for a, b in zip(starts, starts[1:], strict=False)]


class SentimentWorld(CachedWorld):
    name = "sentiment"

    def __init__(self, settings: SentimentSettings | None = None):
        self.settings = settings or SentimentSettings()

    def prompts(self, split: str) -> list[str]:
        return [row["prompt"] for row in self.scored_samples(split)]

    def gold_reward(self, prompts: list[str], completions: list[str]) -> list[float]:
        return vader_scores(completions)

    def _build(self, out: Path) -> None:
        s = self.settings
        rng = random.Random(s.seed)
        reviews = [make_review(rng) for _ in range(s.n_reviews)]
        (out / "corpus.txt").write_text("\n".join(reviews) + "\n")
        tokenizer = train_word_tokenizer(reviews)
        print(f"  sentiment: {len(reviews)} reviews, vocabulary {len(tokenizer)} words; SFT ...")
        model = sft_tiny_model(
            tokenizer,
            reviews,
            SFTSchedule(steps=s.sft_steps, lr=s.sft_lr, seed=s.seed),
            out=out / "sft_run",
        )
        model.save_pretrained(out / "reference")
        tokenizer.save_pretrained(out / "reference")
        # Prompts come from fresh reviews, so no prompt is a memorised training prefix.
        for split, prompts in zip(SPLITS, split_prompts(rng, s.n_prompts), strict=True):
            rows = sample_and_score(model, tokenizer, prompts, s, seed=s.seed + SPLITS.index(split))
            with open(out / f"samples_{split}.jsonl", "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        print(
            f"  sentiment: sampled {s.samples_per_prompt} completions for {sum(s.n_prompts)} prompts"
        )


def train_word_tokenizer(texts: list[str]):
    """A word-level tokenizer trained on the corpus, with <s> </s> <pad> <unk> specials."""
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.train_from_iterator(texts, WordLevelTrainer(special_tokens=specials))
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def sample_and_score(model, tokenizer, prompts, settings: SentimentSettings, seed: int):
    """`samples_per_prompt` reference completions of each prompt with their VADER rewards."""
    k = settings.samples_per_prompt
    repeated = [p for p in prompts for _ in range(k)]
    sampling = Sampling(max_new_tokens=settings.max_new_tokens, seed=seed)
    samples = sample_completions(model, tokenizer, repeated, sampling)
    texts = [" " + t for t in samples.texts]  # completions continue the prompt after a space
    rewards = vader_scores(texts)
    return [
        {
            "prompt": p,
            "completions": texts[i * k : (i + 1) * k],
            "rewards": rewards[i * k : (i + 1) * k],
        }
        for i, p in enumerate(prompts)
    ]


@functools.cache
def _vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()  # reads its lexicon file: once, on first use


def vader_scores(texts: list[str]) -> list[float]:
    """VADER compound score of each text, in [-1, 1]; the sentiment world's gold reward."""
    return [_vader().polarity_scores(t)["compound"] for t in texts]
