"""A Ctrl-C that lands in a finalizer (a __del__, a weakref callback) is swallowed by Python;
the harness's handling delivers it again, so the command still stops."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc, signal, time
    from harness.infra.signals import stop_on_signals

    stop_on_signals()

    class Finalized:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # its KeyboardInterrupt is raised in here

    Finalized()  # collected at once: the interrupt lands in __del__ and Python swallows it
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            time.sleep(0.01)
        print("still running")
    except KeyboardInterrupt as err:
        print("stopped:", err)
    """
)


def test_an_interrupt_swallowed_by_a_finalizer_still_stops_the_program():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "stopped: stopped by signal SIGINT", (done.stdout, done.stderr)
    assert "Exception ignored in sys.unraisablehook" not in done.stderr
