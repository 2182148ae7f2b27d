"""What the terminal shows: one progress line per stage, and library output only on request.

Libraries print progress bars and notices of their own (lm-eval's per-request bars, `git`
errors from lm-eval's environment report, transformers' save bars). The harness captures what
they write to stderr while they run and shows it only if the call fails, or always with
`--verbose` (HARNESS_VERBOSE=1, inherited by sweep workers).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time

VERBOSE_ENV = "HARNESS_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def library_output():
    """Capture what is written to stderr (file descriptor 2, so subprocesses too) while the
    block runs; replay it if the block raises. With --verbose, nothing is captured."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        # sys.stderr too: it need not write to descriptor 2 (a test runner's capture, a notebook)
        text = open(buffer.fileno(), "w", buffering=1, closefd=False)  # noqa: SIM115
        python_stderr, sys.stderr = sys.stderr, text
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            text.flush()
            sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                buffer.seek(0)
                sys.stderr.write(buffer.read().decode(errors="replace")[-20_000:])


class Progress:
    """One line for a stage: redrawn in place on a terminal; elsewhere (logs, pipes) printed at
    each quarter and at the end, so a long stage is never silent."""

    def __init__(self, label: str, total: int, stream=None):
        self.label, self.total = label, max(total, 1)
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()
        self.printed_quarter = 0

    def update(self, done: int, note: str = "") -> None:
        line = self._line(done, note)
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            self.stream.flush()
            return
        quarter = 4 * done // self.total
        if quarter > self.printed_quarter and done < self.total:
            self.printed_quarter = quarter
            print(line, file=self.stream, flush=True)

    def finish(self, note: str = "") -> None:
        line = self._line(self.total, note)
        if self.tty:
            self.stream.write("\r" + line.ljust(100) + "\n")
        else:
            print(line, file=self.stream)
        self.stream.flush()

    def _line(self, done: int, note: str) -> str:
        width = 20
        filled = width * min(done, self.total) // self.total
        bar = "#" * filled + "." * (width - filled)
        seconds = time.perf_counter() - self.started
        return f"{self.label} [{bar}] {done}/{self.total} {seconds:5.1f}s {note}".rstrip()
