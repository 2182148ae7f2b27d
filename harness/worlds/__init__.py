"""Built-in offline worlds, by name. Each builds its data and models once, cached by settings."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from harness.registry import Registry
from harness.worlds.base import World

# name -> factory; factories import lazily so that naming a world costs nothing.
WORLDS: Registry[Callable[[], World]] = Registry("world")


def _sentiment() -> World:
    from harness.worlds.sentiment import SentimentWorld

    return SentimentWorld()


def _exact() -> World:
    from harness.worlds.exact import ExactWorld

    return ExactWorld()


WORLDS.register("sentiment", _sentiment)
WORLDS.register("exact", _exact)


@cache
def get_world(name: str) -> World:
    return WORLDS.get(name)()
