"""Load causal LMs by hub id or local path, and build the tiny GPT-2 models of built-in worlds."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from harness.config.errors import UserError
from harness.config.spec import ModelSpec, SpecError
from harness.data.lora import is_adapter, load_adapter

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
        # GPT-2's tanh GELU as torch's one fused kernel: the same function as the default
        # "gelu_new" (written out in 8 tensor ops), a tiny model's training step ~10% faster.
        activation_function="gelu_pytorch_tanh",
    )
    return GPT2LMHeadModel(config)


class ModelError(UserError, ValueError):
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


def resolve_dtype(name: str) -> torch.dtype:
    """`model.dtype` on this machine; refuses a dtype the device cannot train in, before loading.

    "auto" is bfloat16 on a GPU that supports it and float32 otherwise: on a CPU bf16 runs but
    is slower than fp32 and less exact, so it is used there only when asked for.
    """
    cuda = torch.cuda.is_available()
    if name == "auto":
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    if name == "float16" and not cuda:
        raise SpecError(
            "model.dtype='float16' needs a CUDA GPU and this machine has none (torch does not "
            "train float16 on a CPU); use 'bfloat16' (CPUs run it) or 'float32'"
        )
    if name == "bfloat16" and cuda and not torch.cuda.is_bf16_supported():
        raise SpecError(
            f"model.dtype='bfloat16': {torch.cuda.get_device_name()} does not support bfloat16; "
            "use 'float16' or 'float32'"
        )
    return TORCH_DTYPES[name]


def weights_dtype(model: ModelSpec) -> torch.dtype:
    """The dtype weights load in: the compute dtype, except float32 master weights for a float16
    full fine-tune (fp16 autocast: the gradient scaler refuses float16 weights)."""
    dtype = resolve_dtype(model.dtype)
    return torch.float32 if dtype == torch.float16 and model.lora is None else dtype


def load_causal_lm(
    name_or_path: str | Path, *, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False
):
    """The same call takes a hub id or a folder written by `save_pretrained`."""
    with _named(name_or_path):
        model = AutoModelForCausalLM.from_pretrained(
            str(name_or_path), dtype=dtype, trust_remote_code=trust_remote_code
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


def load_policy(
    folder: str | Path,
    base: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
):
    """A saved policy: full weights, or a LoRA adapter put back on its base model (`base`)."""
    if not is_adapter(folder):
        return load_causal_lm(folder, dtype=dtype, trust_remote_code=trust_remote_code)
    model = load_causal_lm(base, dtype=dtype, trust_remote_code=trust_remote_code)
    return load_adapter(model, folder)
