"""The one device choice and the one CPU-safe TrainingArguments base every trainer starts from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from harness.infra import distributed


def default_device() -> str:
    """cuda when a GPU is visible, else cpu (HF and lm-eval default to cuda unconditionally);
    under several processes, this process's own device (cuda:LOCAL_RANK)."""
    if distributed.launched():
        return str(distributed.state().device)
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """torch's CPU kernels on one thread inside the block (the count before is restored after).

    Their sums split across threads, so a model trained on 2 threads differs in rounding from one
    trained on 1, and training amplifies it (a world's judge: held-out pair accuracy 0.787 on
    1 thread, 0.794 on 2). A cached build made inside this block is the same whichever process,
    thread setting or machine builds it first.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def precision_arguments(dtype: torch.dtype, gradient_checkpointing: bool) -> dict[str, Any]:
    """TrainingArguments for the run's compute dtype: bf16 or fp16 autocast, or plain fp32."""
    return {
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "gradient_checkpointing": gradient_checkpointing,
    }


def training_arguments(output_dir: str, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for any TRL/transformers TrainingArguments, safe on a CPU.

    TRL's configs assume a GPU: bf16 and gradient checkpointing are on by default. fp32 is exact
    and fast enough for the tiny models here, and checkpointing only slows small models. The
    harness logs to MLflow itself (harness.methods.callbacks), prints its own progress, and keeps no
    trainer checkpoints. `overrides` set the run's own values (steps, lr, batch size, seed...).
    """
    return {
        "output_dir": output_dir,
        "bf16": False,
        "gradient_checkpointing": False,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": True,
        # A device's type, not its name: under several CPU processes accelerate names it "cpu:1",
        # and use_cpu=False there makes every process train alone instead of joining DDP.
        "use_cpu": torch.device(default_device()).type == "cpu",
        **overrides,
    }
