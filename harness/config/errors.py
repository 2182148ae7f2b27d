"""Failures the commands report in one line, not as a traceback: `UserError` (bad input, exit 2)
and `RunFailed` (a run failed for a stated reason, exit 1). Anything else is a bug: traceback,
exit 1."""

from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input (experiment, data, store, file): the command prints the message, which names
    the field, row or file, in one line and exits 2. Subclasses that callers also catch as
    `ValueError` keep it as a second base."""


class RunFailed(RuntimeError):
    """A run failed for a reason the message states (diverged, policy not saved): the command
    prints it in one line, names the run (marked FAILED) and exits 1."""


def disk_error(err: OSError) -> bool:
    """Whether `err` says the disk is full or read-only (not a bug: one line, not a traceback)."""
    return err.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES)
