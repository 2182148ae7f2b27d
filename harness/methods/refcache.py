"""A disk cache of reference log-probabilities shared by every run with the same reference.

DPO-family losses need log pi_ref(y|x) for every training pair; they never change while the
reference is frozen. TRL can precompute them at the start of a run (`precompute_ref_log_probs`)
but keeps them for that run only. Every trial of a sweep over beta, lr or loss shares the same
reference and data, so the harness stores them under results/cache/reference_logps, keyed by
(reference weights, tokenizer, tokenized data, max length, truncation), and loads them instead
of running the reference again. Each entry is a verified cache folder (harness/cache.py):
written whole, checked against its manifest when read, rebuilt when broken.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import torch
from peft import PeftModel

from harness.config.tags import REFERENCE_CACHE
from harness.infra.cache import cached_dir
from harness.infra.tracked import TrackedRun

COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
LOGPS_FILE = "logps.npz"  # arrays only, read with allow_pickle=False


def model_fingerprint(model) -> str:
    """A hash of the base weights: a LoRA policy's adapter tensors are left out and PEFT's
    renamed base layers (`.base_layer.`) hashed under their own names, so a LoRA run (whose
    reference is the base with the adapter off) shares cache entries with full fine-tunes."""
    digest = hashlib.sha256()
    if isinstance(model, PeftModel):
        model = model.get_base_model()
    for name, tensor in sorted(model.state_dict().items()):
        if "lora_" in name:
            continue
        digest.update(name.replace(".base_layer.", ".").encode())
        digest.update(tensor.detach().to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256((text + repr(tokenizer.special_tokens_map)).encode()).hexdigest()[:16]


def dataset_fingerprint(dataset, columns=("prompt_ids", "chosen_ids", "rejected_ids")) -> str:
    """A hash of the token-id columns, row order included: each column's row lengths, then its
    ids, read from the Arrow table as arrays (0.002 s for 4k rows; row by row in Python, 0.2-1 s
    a run)."""
    digest = hashlib.sha256()
    table = dataset.with_format("arrow")[:]  # the rows in the dataset's order (indices applied)
    for column in columns:
        ids = table.column(column).combine_chunks()
        for part in (pc.list_value_length(ids), pc.list_flatten(ids)):
            digest.update(part.to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]


def with_reference_cache(trainer_class, tracked: TrackedRun | None = None):
    """A subclass of a DPOTrainer-like class whose precomputed reference log-probs are cached.

        Private TRL API, pinned (tests/test_pinned_internals.py fails naming the trl version if it
        changes): DPOTrainer's public `precompute_ref_log_probs` reuses log-probs only through a
        `datasets` cache file of the dataset it tokenized itself, not across runs in a verified
        cache; `_precompute_ref_logps` is the one step between TRL's tokenization and training
        where the columns can be supplied instead of computed. Whether the cache served is the
    `reference_cache` tag of `tracked` (None: untagged)."""

    def _tag(outcome: str) -> None:
        if tracked is not None:
            tracked.set_tag(REFERENCE_CACHE, outcome)

    class CachedReferenceTrainer(trainer_class):
        def _precompute_ref_logps(self, dataset, name, batch_size):
            key = {
                "model": model_fingerprint(self.ref_model or self.model),
                "tokenizer": tokenizer_fingerprint(self.processing_class),
                "data": dataset_fingerprint(dataset),
                "max_length": self.args.max_length,
                "truncation": self.args.truncation_mode,
            }
            computed = []

            def build(out: Path) -> None:
                computed.append(
                    super(CachedReferenceTrainer, self)._precompute_ref_logps(
                        dataset, name, batch_size
                    )
                )
                columns = {c: np.asarray(computed[0][c], dtype=np.float32) for c in COLUMNS}
                np.savez(out / LOGPS_FILE, **columns)

            folder = cached_dir("reference_logps", key, build)
            if computed:
                _tag("miss")
                return computed[0]
            cached = _read_logps(folder)
            for column in COLUMNS:
                dataset = dataset.add_column(column, cached[column].tolist())
            _tag("hit")
            return dataset

    CachedReferenceTrainer.__name__ = f"Cached{trainer_class.__name__}"
    return CachedReferenceTrainer


def _read_logps(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / LOGPS_FILE, allow_pickle=False) as cached:
        return {column: cached[column] for column in COLUMNS}
