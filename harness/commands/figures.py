"""`harness figures`: regenerate the paper's figures and tables (the same as `python -m analysis`)."""

from __future__ import annotations

from analysis import cli as analysis_cli


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "figures", help="regenerate paper figures and tables from the runs in MLflow"
    )
    analysis_cli.add_arguments(parser)
    parser.set_defaults(func=analysis_cli.run)
