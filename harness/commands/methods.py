"""`harness methods`: the method registry as a table."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "methods", help="list the registered methods: trainer, what beta means, data, settings"
    )
    parser.set_defaults(func=cmd_methods)


def cmd_methods(args) -> int:
    from harness.methods.catalog import method_table  # deferred: the registry imports TRL (seconds)

    print(method_table())
    return 0
