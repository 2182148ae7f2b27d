"""Supervised fine-tuning of a world's tiny reference model: the same recipe for every world."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from transformers import PrinterCallback
from trl import SFTConfig, SFTTrainer

from harness.data.models import build_tiny_gpt2
from harness.infra.devices import training_arguments
from harness.infra.stage_progress import StageProgress


@dataclass(frozen=True, kw_only=True)
class SFTSchedule:
    """How long and how fast the reference is fine-tuned (cosine decay from `lr`), and the seed
    of its initial weights and of the data order."""

    steps: int
    lr: float
    seed: int


def sft_tiny_model(tokenizer, texts: list[str], schedule: SFTSchedule, *, out: Path, **model_size):
    """Train a tiny GPT-2 (`model_size`: build_tiny_gpt2's sizes) on `texts` with TRL's SFTTrainer."""
    steps, seed = schedule.steps, schedule.seed
    config = SFTConfig(
        **training_arguments(
            str(out),
            max_steps=steps,
            per_device_train_batch_size=32,
            learning_rate=schedule.lr,
            lr_scheduler_type="cosine",
            warmup_steps=20,
            seed=seed,
            logging_steps=max(1, steps // 4),
        ),
        max_length=96,
    )
    trainer = SFTTrainer(
        model=build_tiny_gpt2(tokenizer, seed=seed, **model_size),
        args=config,
        train_dataset=Dataset.from_dict({"text": texts}),
        processing_class=tokenizer,
        callbacks=[StageProgress(f"  reference model: SFT on {len(texts)} texts")],
    )
    trainer.remove_callback(PrinterCallback)  # StageProgress prints the line
    trainer.train()
    return trainer.model.eval()
