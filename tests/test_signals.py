"""A Ctrl-C that lands in a finalizer (a __del__, a weakref callback) is swallowed by Python;
the harness's handling delivers it again, so the command still stops."""

import subprocess
import sys
import textwrap

import pytest

from tests.faults.helpers import ctrl_c_as_in_a_terminal

FINALIZER_INTERRUPTED = """
import signal, sys
from harness.infra.signals import stop_on_signals

stop_on_signals()

class Finalized:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)  # its KeyboardInterrupt is raised in here
"""

HOOK_INTERRUPTED = """
import signal, sys

def hook(unraisable):  # the hook in place before the harness's: a signal arrives while it runs
    signal.raise_signal(signal.SIGINT)
    sum(range(1000))  # bytecodes: the handler runs here, inside the hook

sys.unraisablehook = hook
from harness.infra.signals import stop_on_signals

stop_on_signals()

class Finalized:
    def __del__(self):
        raise ValueError("a finalizer's own error, handed to the hooks")
"""

SCRIPT = textwrap.dedent(
    """
    import time
    Finalized()  # collected at once: the interrupt lands in a finalizer or the hook behind it
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            time.sleep(0.01)
        print("still running")
    except KeyboardInterrupt as err:
        print("stopped:", err)
    """
)


@pytest.mark.parametrize(
    "setup", [FINALIZER_INTERRUPTED, HOOK_INTERRUPTED], ids=["in-finalizer", "in-hook"]
)
def test_an_interrupt_swallowed_by_a_finalizer_still_stops_the_program(setup):
    script = setup + SCRIPT
    done = subprocess.run(
        [sys.executable, "-c", script],
        preexec_fn=ctrl_c_as_in_a_terminal,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "stopped: stopped by signal SIGINT", (done.stdout, done.stderr)
    assert "Exception ignored in sys.unraisablehook" not in done.stderr
