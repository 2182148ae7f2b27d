"""Build-once caching under results/cache, keyed by settings, safe with concurrent workers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock


def cache_root() -> Path:
    """results/cache under the working directory, or $HARNESS_CACHE."""
    return Path(os.environ.get("HARNESS_CACHE", "results/cache")).resolve()


def settings_key(settings: dict[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def cached_dir(
    kind: str,
    settings: dict[str, Any],
    build: Callable[[Path], None],
    log: Callable[[str], None] = print,
) -> Path:
    """The folder for `settings`, built by `build(tmp_dir)` the first time.

    The build writes into a temporary folder renamed into place when complete, under a file
    lock, so a crashed build leaves nothing behind and parallel workers build it once.
    """
    root = cache_root() / kind
    target = root / settings_key(settings)
    if (target / "settings.json").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / f".{target.name}.lock"):
        if (target / "settings.json").exists():  # another worker built it while we waited
            return target
        log(f"building {kind} {target.name} (cached afterwards in {target})")
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}-"))
        try:
            build(tmp)
            (tmp / "settings.json").write_text(json.dumps(settings, indent=2, sort_keys=True))
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


class WarmCache:
    """What a sweep worker's trials share, kept in memory from one trial to the next: the
    reference model and tokenizer, reference log-probs, the reference's evaluation samples,
    judges. Keys are the settings that determine a value, as for the disk caches; least recently
    used entries are dropped once their tensors and arrays pass `max_bytes`. Off (every call
    builds afresh) until a worker turns it on with `warm_cache()`."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.enabled = max_bytes, False
        self.entries: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()

    def get(self, key: tuple, build: Callable[[], Any]) -> Any:
        if not self.enabled:
            return build()
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key][0]
        value = build()
        self.entries[key] = (value, _nbytes(value))
        while len(self.entries) > 1 and sum(n for _, n in self.entries.values()) > self.max_bytes:
            self.entries.popitem(last=False)
        return value


def _nbytes(value) -> int:
    """Memory held by tensors and arrays in `value` (models, tuples, lists, dicts of them)."""
    if hasattr(value, "parameters") and hasattr(value, "buffers"):  # a torch module
        return sum(t.nbytes for t in (*value.parameters(), *value.buffers()))
    if isinstance(value, tuple | list):
        return sum(_nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    return getattr(value, "nbytes", 0)


# 4 GiB by default: a few small references, or one 1B-parameter model in fp32.
warm = WarmCache(int(float(os.environ.get("HARNESS_WARM_GB", "4")) * 2**30))


@contextlib.contextmanager
def warm_cache(enabled: bool = True):
    """Keep what trials share in memory for the block (a sweep worker's life), then drop it."""
    previous, warm.enabled = warm.enabled, enabled
    try:
        yield warm
    finally:
        warm.enabled = previous
        warm.entries.clear()
