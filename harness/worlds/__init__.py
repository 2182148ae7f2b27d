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


WORLDS.register("sentiment", _sentiment)


@cache
def get_world(name: str) -> World:
    return WORLDS.get(name)()
