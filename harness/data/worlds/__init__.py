"""Built-in offline worlds, by name. Each builds its data and models once, cached by settings."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from harness.config.registry import Registry
from harness.data.worlds.base import World
from harness.data.worlds.exact import ExactWorld
from harness.data.worlds.sentiment import SentimentWorld
from harness.infra.cache import cache_location

# name -> factory: a world builds (or loads) its cache only when first used.
WORLDS: Registry[Callable[[], World]] = Registry("world")
WORLDS.register("sentiment", SentimentWorld)
WORLDS.register("exact", ExactWorld)


def world_version(name: str) -> str:
    """The generator version of built-in world `name` ("none" for any other dataset): runs
    trained on different versions of a world are not the same experiment."""
    if name not in WORLDS:
        return "none"
    return str(getattr(getattr(get_world(name), "settings", None), "version", "none"))


def get_world(name: str) -> World:
    """The world `name`, one object per cache folder ($HARNESS_CACHE may change within a
    process): a world keeps what it computed in memory (the exact world: its rewards table,
    its reference's outcome log-probs)."""
    return _world(name, cache_location())


@cache
def _world(name: str, cache: Path) -> World:
    return WORLDS.get(name)()
