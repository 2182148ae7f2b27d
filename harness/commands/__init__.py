"""Every CLI entry point, one module per command; each has `register(subparsers)`.

The top of the layers: commands import the library, nothing imports commands (but
`harness.commands.cli`, which assembles them). Heavy layers (torch, TRL) are imported inside the
command's function, so `harness --help` and argument errors stay fast.
"""

from harness.commands import compare, evaluate, fields, figures, methods, run, sweep

COMMANDS = (run, sweep, evaluate, figures, compare, methods, fields)
