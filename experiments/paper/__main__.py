"""`python -m experiments.paper`: what `make paper` runs."""

import sys

from experiments.paper.runner import main

sys.exit(main())
