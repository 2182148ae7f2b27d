"""`python -m harness ...`: the same command line as the `harness` entry point (launchers such as
`accelerate launch -m harness` and `torchrun -m harness` start it this way)."""

from harness.commands.cli import main

raise SystemExit(main())
