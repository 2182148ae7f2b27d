"""Load causal LMs by hub id or local path, and build the tiny GPT-2 models of built-in worlds."""

from __future__ import annotations

import contextlib
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


class ModelError(ValueError):
    """A model that cannot be loaded by the name given (a hub id while offline, a bad folder)."""


@contextlib.contextmanager
def _named(name_or_path: str | Path):
    """Turn the hub client's many-line errors into one line naming the model."""
    try:
        yield
    except OSError as err:
        if Path(name_or_path).exists():
            raise ModelError(f"model {str(name_or_path)!r}: {err}") from None
        raise ModelError(
            f"model {str(name_or_path)!r} is not a local folder and the hub cannot be reached "
            "(offline: use a local path, a folder written by save_pretrained)"
        ) from None


def load_causal_lm(name_or_path: str | Path, *, trust_remote_code: bool = False):
    """fp32 on CPU; the same call takes a hub id or a folder written by `save_pretrained`."""
    with _named(name_or_path):
        model = AutoModelForCausalLM.from_pretrained(
            str(name_or_path), dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    model.generation_config.pad_token_id = model.config.pad_token_id
    return model


def load_tokenizer(name_or_path: str | Path, *, trust_remote_code: bool = False):
    with _named(name_or_path):
        tokenizer = AutoTokenizer.from_pretrained(
            str(name_or_path), trust_remote_code=trust_remote_code
        )
    if tokenizer.pad_token is None:  # many hub causal LMs ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
