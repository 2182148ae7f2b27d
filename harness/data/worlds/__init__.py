"""Built-in offline worlds, by name. Each builds its data and models once, cached by settings."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from harness.config.registry import Registry
from harness.data.worlds.base import World
from harness.data.worlds.exact import ExactWorld
from harness.data.worlds.sentiment import SentimentWorld

# name -> factory: a world builds (or loads) its cache only when first used.
WORLDS: Registry[Callable[[], World]] = Registry("world")
WORLDS.register("sentiment", SentimentWorld)
WORLDS.register("exact", ExactWorld)


@cache
def get_world(name: str) -> World:
    return WORLDS.get(name)()
