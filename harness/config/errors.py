"""Failures the commands report in one line, not as a traceback: `UserError` (bad input, exit 2)
and `RunFailed` (a run failed for a stated reason, exit 1). Anything else is a bug: traceback,
exit 1."""

from __future__ import annotations

import errno
import re

# How libraries written in Rust (safetensors, tokenizers) report an OS error in their message.
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
DISK_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES)


class UserError(Exception):
    """Bad input (experiment, data, store, file): the command prints the message, which names
    the field, row or file, in one line and exits 2. Subclasses that callers also catch as
    `ValueError` keep it as a second base."""


class RunFailed(RuntimeError):
    """A run failed for a reason the message states (diverged, policy not saved): the command
    prints it in one line, names the run (marked FAILED) and exits 1."""


def disk_error(err: BaseException) -> bool:
    """Whether `err` says the disk is full or read-only (not a bug: one line, not a traceback):
    an OSError, or another library's error whose message carries one (safetensors'
    SafetensorError says "No space left on device (os error 28)")."""
    return disk_errno(err) is not None


def disk_errno(err: BaseException) -> int | None:
    """The errno of a full or read-only disk that `err` reports, else None."""
    if isinstance(err, OSError):
        return err.errno if err.errno in DISK_ERRNOS else None
    found = _OS_ERROR.search(str(err))
    code = int(found[1]) if found else None
    return code if code in DISK_ERRNOS else None
