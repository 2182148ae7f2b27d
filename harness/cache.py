"""Build-once caching under results/cache, keyed by settings, safe with concurrent workers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
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
