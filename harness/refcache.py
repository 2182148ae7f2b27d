"""A disk cache of reference log-probabilities shared by every run with the same reference.

DPO-family losses need log pi_ref(y|x) for every training pair; they never change while the
reference is frozen. TRL can precompute them at the start of a run (`precompute_ref_log_probs`)
but keeps them for that run only. Every trial of a sweep over beta, lr or loss shares the same
reference and data, so the harness stores them under results/cache/reference_logps, keyed by
(reference weights, tokenizer, tokenized data, max length, truncation), and loads them instead
of running the reference again. Files are written to a temporary name and renamed, so
concurrent workers never read a partial file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import mlflow
import numpy as np
import torch

from harness.cache import cache_root, settings_key, warm

COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


def cache_dir():
    return cache_root() / "reference_logps"


def model_fingerprint(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256((text + repr(tokenizer.special_tokens_map)).encode()).hexdigest()[:16]


def dataset_fingerprint(dataset, columns=("prompt_ids", "chosen_ids", "rejected_ids")) -> str:
    digest = hashlib.sha256()
    for column in columns:
        for row in dataset[column]:
            digest.update(np.asarray(row, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()[:16]


def with_reference_cache(trainer_class):
    """A subclass of a DPOTrainer-like class whose precomputed reference log-probs are cached."""

    class CachedReferenceTrainer(trainer_class):
        def _precompute_ref_logps(self, dataset, name, batch_size):
            key = settings_key(
                {
                    "model": model_fingerprint(self.ref_model or self.model),
                    "tokenizer": tokenizer_fingerprint(self.processing_class),
                    "data": dataset_fingerprint(dataset),
                    "max_length": self.args.max_length,
                    "truncation": self.args.truncation_mode,
                }
            )
            path = cache_dir() / f"{key}.npz"
            if path.exists():  # a warm worker reads the file once and keeps the arrays
                cached = warm.get(("reference_logps", key), lambda: dict(np.load(path)))
                for column in COLUMNS:
                    dataset = dataset.add_column(column, cached[column].tolist())
                _tag("hit")
                return dataset
            dataset = super()._precompute_ref_logps(dataset, name, batch_size)
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
                np.savez(tmp, **{c: np.asarray(dataset[c], dtype=np.float32) for c in COLUMNS})
            os.replace(tmp.name, path)
            _tag("miss")
            return dataset

    CachedReferenceTrainer.__name__ = f"Cached{trainer_class.__name__}"
    return CachedReferenceTrainer


def _tag(outcome: str) -> None:
    """Record on the active run whether its reference log-probs came from the cache."""
    if mlflow.active_run():
        mlflow.set_tag("reference_cache", outcome)
