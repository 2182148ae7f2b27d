"""Ctrl-C and SIGTERM as KeyboardInterrupt in the main thread, delivered and never lost.

Python runs a signal handler between two bytecodes of the main thread, also inside a finalizer
(a `__del__`, a weakref callback); an exception raised there is swallowed ("Exception ignored
in ...", its traceback printed) and the program goes on. Measured: a sweep worker stopped by
SIGTERM inside SQLAlchemy's class-registry weakref callback printed a traceback and trained on
until it was killed. Here such a swallowed interrupt is raised again in the code that runs next.
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import signal
import sys
import threading
import time
import traceback

_state: dict = {
    "signal": None,
    "once": False,
    "raised": False,
    "previous": sys.unraisablehook,
}


def stop_on_signals(once: bool = False) -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt("stopped by signal NAME") in the main thread.

    With `once`, only the first does: later ones are ignored, so that they cannot break the
    clean-up it started (a Ctrl-C reaches every process of a terminal's process group, and a
    sweep's parent forwards it to its workers too). A SIGINT ignored by whoever started the
    process (a job started in the background) stays ignored."""
    _state["once"] = once
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _raise)
    signal.signal(signal.SIGTERM, _raise)
    if sys.unraisablehook is not _raise_again:  # in front of whatever hook was there
        _state["previous"] = sys.unraisablehook
        sys.unraisablehook = _raise_again


def _raise(signum, frame):
    if _state["once"] and _state["raised"]:
        return
    if _inside_hook(frame):  # raised here, it would be swallowed once more
        _interrupt_later(signum)
        return
    _state.update(signal=signum, raised=True)
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def _raise_again(unraisable) -> None:
    """A KeyboardInterrupt a finalizer swallowed: the same signal again, from a thread.

    Not from here: the handler would run inside this hook, and its KeyboardInterrupt be
    swallowed as "Exception ignored in sys.unraisablehook" (measured: 2 of 8 `harness run`s
    interrupted 0.7-1 s into training trained on until killed)."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _state["signal"] is not None:
        _state["raised"] = False
        _interrupt_later(_state["signal"])
        return
    _state["previous"](unraisable)


def _inside_hook(frame) -> bool:
    """Whether the main thread is running this module's unraisable hook (or the hook it wraps).
    Read from the stack, not from a flag the hook clears: a flag is cleared a few bytecodes
    before the hook returns, and a signal landing in between would be lost."""
    while frame is not None:
        if frame.f_code is _raise_again.__code__:
            return True
        frame = frame.f_back
    return False


def _interrupt_later(signum: int) -> None:
    """Signal the main thread from another thread: the handler runs in the code the main thread
    runs next, and defers once more while that is still the hook."""

    def interrupt() -> None:
        time.sleep(0.001)  # lets the hook return first, most times
        _thread.interrupt_main(signum)

    threading.Thread(target=interrupt, daemon=True).start()


@contextlib.contextmanager
def signals_ignored(*signums: int):
    """Ignore `signums` for the block. A run already stopping: a second signal (SLURM sends
    SIGTERM right after it requeues a job on SIGUSR2; a second Ctrl-C) would cut its ending
    short, and MLflow would then mark it FAILED. Signal handlers live in the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def interrupts_deferred():
    """Hold SIGINT and SIGTERM for the block, then deliver them as they came.

    For a store write: an interrupt inside SQLAlchemy can leave its SQLite connection holding
    the write lock, and every later write of the process (the run's KILLED ending) waits out
    the busy timeout and fails, leaving the run RUNNING (measured: 3 of 12 interrupted
    log_batch loops). The main thread only; a signal ignored stays ignored."""
    if threading.current_thread() is not threading.main_thread() or _state.get("deferring"):
        yield
        return
    held: list[int] = []
    handlers = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            handlers[signum] = signal.signal(signum, lambda s, _frame: held.append(s))
    _state["deferring"] = True
    try:
        yield
    finally:
        _state["deferring"] = False
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)  # its own handler now: KeyboardInterrupt, as it would be


def release_cut_statements(err: BaseException) -> None:
    """Let go of the database statements an interrupt cut short, before the clean-up writes.

    Ctrl-C inside sqlite3's `cursor.execute` of a SELECT (MLflow's reads while it logs a model)
    leaves the cursor, and the shared lock of its unfinished statement, referenced from the
    frames of `err`'s traceback: every later write of the process waits out the busy timeout
    and fails "database is locked" (the run's KILLED ending, the unsaved model's deletion).
    Measured with SIGINT at random moments of `mlflow.transformers.log_model`: the next write
    failed after the 1st, 5th and 21st interrupt landing there; with the frames cleared, 200
    interrupts (7 inside `cursor.execute`), every write after them landed. The frames have
    finished (those still running are left as they are); clearing them frees the cursor."""
    traceback.clear_frames(err.__traceback__)
    gc.collect()  # the cursor may sit in a reference cycle (a frame and its exception)
