"""Synthetic text for the benchmarks: a word list, and a BPE tokenizer that makes each word one
token (so a text of k words is k tokens, and sequence lengths are set by word counts)."""

from __future__ import annotations

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

WORDS = [
    "the",
    "a",
    "movie",
    "film",
    "plot",
    "story",
    "acting",
    "scene",
    "was",
    "is",
    "great",
    "good",
    "bad",
    "awful",
    "fine",
    "dull",
    "loved",
    "hated",
    "and",
    "but",
    "it",
    "this",
    "that",
    "very",
    "quite",
]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on sentences of WORDS, with <pad>, <s>, </s> and <unk>."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,  # room for every word to become one token
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    rng = random.Random(0)
    bpe.train_from_iterator([" ".join(rng.choices(WORDS, k=12)) for _ in range(500)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )
