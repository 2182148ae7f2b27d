"""`harness compare`: methods against a baseline at matched KL, over seeds (analysis.compare)."""

from __future__ import annotations

from analysis import compare_cli


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare an experiment's methods with a baseline at matched KL, over seeds",
    )
    compare_cli.add_arguments(parser)
    parser.set_defaults(func=compare_cli.run)
