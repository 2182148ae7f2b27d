"""Wall-clock seconds of every call of a method, measured by wrapping it where it is defined."""

from __future__ import annotations

import functools
import time


def seconds_of_calls(owner: object, name: str) -> list[float]:
    """From now on, every call of `owner.name` (a class's method or a module's function) appends its seconds to the returned list (for the
    rest of the process: each benchmark variant runs in a process of its own)."""
    seconds: list[float] = []
    method = getattr(owner, name)

    @functools.wraps(method)
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - started)

    setattr(owner, name, timed)
    return seconds
