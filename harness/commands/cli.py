"""`harness` command line: run experiments, sweep them, score them, draw their figures."""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from harness.commands import COMMANDS
from harness.config.errors import RunFailed, UserError, disk_error
from harness.infra.console import VERBOSE_ENV
from harness.infra.signals import stop_on_signals


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' own output (progress bars, notices, warnings)",
    )
    parser.set_defaults(cli_main=main)  # what a launcher's jobs call: this command line again
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 2 bad input (one line naming the field, file or row); 1 a run failed
    for a stated reason (diverged, disk full) or a bug (with its traceback); 130 interrupted (the run is marked KILLED)."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # sweep workers inherit it
    stop_on_signals()  # a scheduler stopping the job (SIGTERM): as Ctrl-C
    # MLflow's client retries a tracking server that does not answer 7 times with backoff
    # (about 4 minutes per call); 4 retries ride out some 15 s of a server restarting.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        print(f"harness: interrupted{f': {err}' if str(err) else ''}", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError) as err:  # SpecError, DataError, ...: user input
        print(f"harness: error: {err}", file=sys.stderr)
        return 2
    except RunFailed as err:
        print(f"harness: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        if disk_error(err):  # a full or read-only disk, reported by any library: not a bug
            print(f"harness: error: {err}", file=sys.stderr)
            return 1
        from harness.infra import stores  # deferred: MLflow (a second)

        if not stores.unreachable(err):
            return _bug()
        print(f"harness: error: {stores.server_gone()}", file=sys.stderr)  # outside a run
        return 2


def _bug() -> int:
    """Not bad input: a bug in the harness or a library. Its traceback, exit 1 (its run, if one
    was open, is already FAILED with an `error` tag)."""
    traceback.print_exc(file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
