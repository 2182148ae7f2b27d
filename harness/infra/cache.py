"""Build-once disk caches under results/cache ($HARNESS_CACHE), verified whenever they are read.

An entry is a folder `{kind}/{key}/` whose key hashes its settings. Settings hold content
fingerprints (`source_fingerprint`), never paths, so a moved or copied cache is reused. An
entry is built into a temporary folder, given a manifest (its settings, every file's size and
SHA-256, the row count of every .jsonl file) and renamed into place, under a file lock so that
parallel workers build it once. Reading verifies the manifest; a missing, partial or corrupt
entry is named in one line and rebuilt under the lock, never used.
"""

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

from harness.config.errors import UserError, disk_errno

MANIFEST = "manifest.json"
FORMAT = 1  # bump when the manifest's layout changes
_CHUNK = 1 << 20
# Files above this size are fingerprinted by size and three samples, not read in full: a hub
# model's weights would otherwise take minutes to hash on every run.
_SAMPLED_ABOVE = 256 << 20
_verified: dict[Path, tuple] = {}  # entry -> file stats when it was last verified


class CacheError(UserError, ValueError):
    """A cache location that cannot be used ($HARNESS_CACHE naming a file)."""


def cache_location() -> Path:
    """results/cache under the working directory, or $HARNESS_CACHE, unchecked."""
    return Path(os.environ.get("HARNESS_CACHE", "results/cache")).resolve()


def cache_root() -> Path:
    """`cache_location()`, checked to be a folder (or none yet)."""
    root = cache_location()
    for folder in (root, *root.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == root else f" ({folder} is a file)"
                raise CacheError(
                    f"cache folder {root} (HARNESS_CACHE, default results/cache) is not a "
                    f"folder{where}: point $HARNESS_CACHE at a folder"
                )
            break
    return root


def content_digest(value: Any) -> str:
    """sha256 of `value` as canonical JSON (sorted keys): equal content, equal digest."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def settings_key(settings: dict[str, Any]) -> str:
    return content_digest(settings)[:12]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _file_fingerprint(path: Path) -> str:
    size = path.stat().st_size
    if size <= _SAMPLED_ABOVE:
        return file_digest(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for offset in (0, size // 2, size - _CHUNK):
            f.seek(offset)
            digest.update(f.read(_CHUNK))
    return digest.hexdigest()


def source_fingerprint(source: str | Path) -> str:
    """A model or data source as cache-key material: a folder or file by its content (relative
    names and bytes), anything else (a hub id) by its name."""
    path = Path(source)
    if not path.exists():
        return str(source)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        name = file.relative_to(path).as_posix() if path.is_dir() else file.name
        digest.update(f"{name}\0{_file_fingerprint(file)}\0".encode())
    return digest.hexdigest()[:16]


def _describe_files(folder: Path) -> dict[str, dict]:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name == MANIFEST:
            continue
        entry = {"size": path.stat().st_size, "sha256": file_digest(path)}
        if path.suffix == ".jsonl":
            entry["rows"] = _count_rows(path)
        files[name] = entry
    return files


def _count_rows(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def write_manifest(folder: Path, settings: dict[str, Any]) -> None:
    manifest = {"format": FORMAT, "settings": settings, "files": _describe_files(folder)}
    text = json.dumps(manifest, indent=1, sort_keys=True, default=str)
    (folder / MANIFEST).write_text(text)


def problem(folder: Path, settings: dict[str, Any]) -> str | None:
    """What is wrong with the entry at `folder` (None: it is complete and intact)."""
    if not folder.exists():
        return "missing"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        return f"no {MANIFEST} (an unfinished build, or a cache from an older harness)"
    except (ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    if manifest.get("format") != FORMAT:
        return f"{MANIFEST} has format {manifest.get('format')!r}, expected {FORMAT}"
    expected = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if manifest.get("settings") != expected:
        return "its settings differ from the key's (a hash collision or a hand edit)"
    stats = []
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        stat = path.stat()
        if stat.st_size != want["size"]:
            if "rows" in want:
                return f"{name} has {_count_rows(path)} rows, manifest says {want['rows']}"
            return f"{name} is {stat.st_size} bytes, manifest says {want['size']}"
        stats.append((name, stat.st_size, stat.st_mtime_ns))
    if _verified.get(folder) == tuple(stats):  # unchanged since this process last hashed it
        return None
    for name, want in files.items():
        if file_digest(folder / name) != want["sha256"]:
            return f"{name} does not match its checksum (corrupt)"
    _verified[folder] = tuple(stats)
    return None


def cached_dir(
    kind: str,
    settings: dict[str, Any],
    build: Callable[[Path], None],
    log: Callable[[str], None] = print,
) -> Path:
    """The verified folder for `settings`, built by `build(tmp_dir)` when missing or broken."""
    root = cache_root() / kind
    target = root / settings_key(settings)
    if problem(target, settings) is None:
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / f".{target.name}.lock"):
        found = problem(target, settings)  # another worker may have built it while we waited
        if found is None:
            return target
        if found == "missing":
            log(f"cache: building {kind}/{target.name} in {target}")
        else:
            log(f"cache: {target} is broken ({found}): rebuilding it")
            _discard(target)
        remove_stale_builds(root, target.name)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}-build-"))
        try:
            build(tmp)
            write_manifest(tmp, settings)
            os.replace(tmp, target)
        except Exception as err:
            code = disk_errno(err)
            if code is None:
                raise
            raise OSError(
                code, f"{os.strerror(code)} while caching {kind}/{target.name} (nothing kept)", root
            ) from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _verified.pop(target, None)
    return target


def remove_stale_builds(root: Path, key: str) -> None:
    """Delete what builds of `key` left behind when their process was killed (SIGKILL, power
    cut): only the holder of the entry's lock builds, and the lock ends with its process, so
    a build folder found while holding it belongs to a dead process."""
    for prefix in (f".{key}-build-", f".{key}-broken-"):
        for folder in root.glob(f"{prefix}*"):
            shutil.rmtree(folder, ignore_errors=True)


def _discard(folder: Path) -> None:
    """Move a broken entry aside (one atomic rename), then delete it."""
    aside = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-broken-"))
    os.replace(folder, aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)
