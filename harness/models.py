"""Load causal LMs by hub id or local path, and build the tiny GPT-2 models of built-in worlds."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel


def build_tiny_gpt2(
    tokenizer,
    *,
    n_embd: int = 128,
    n_layer: int = 3,
    n_head: int = 4,
    n_positions: int = 96,
    seed: int = 0,
) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 sized to the tokenizer (about 0.6M parameters by default)."""
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_positions=n_positions,
        # GPT-2's default ids (50256) lie outside a small vocabulary.
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def load_causal_lm(name_or_path: str | Path, *, trust_remote_code: bool = False):
    """fp32 on CPU; the same call takes a hub id or a folder written by `save_pretrained`."""
    model = AutoModelForCausalLM.from_pretrained(
        str(name_or_path), dtype=torch.float32, trust_remote_code=trust_remote_code
    )
    model.generation_config.pad_token_id = model.config.pad_token_id
    return model


def load_tokenizer(name_or_path: str | Path, *, trust_remote_code: bool = False):
    tokenizer = AutoTokenizer.from_pretrained(
        str(name_or_path), trust_remote_code=trust_remote_code
    )
    if tokenizer.pad_token is None:  # many hub causal LMs ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
