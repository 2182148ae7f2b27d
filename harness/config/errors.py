"""Failures the commands report in one line (exit 1), not as a traceback."""

from __future__ import annotations

import errno


class RunFailed(RuntimeError):
    """A run failed for a reason the message states (diverged, policy not saved): the command
    prints it in one line, names the run (marked FAILED) and exits 1."""


def disk_error(err: OSError) -> bool:
    """Whether `err` says the disk is full or read-only (not a bug: one line, not a traceback)."""
    return err.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES)
