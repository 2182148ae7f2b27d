"""`python -m analysis`: the same as `harness figures`."""

import sys

from analysis.cli import main

sys.exit(main())
