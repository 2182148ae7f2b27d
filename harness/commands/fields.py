"""`harness fields`: every experiment field by dotted name, with its default and meaning.

Generated from `harness.config.spec` (the dataclasses and the meaning each field carries in its
metadata), so it cannot drift from what `--set NAME=VALUE`, `Experiment.replace` and sweep spaces
accept.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
import typing
from typing import Any

from harness.config.spec import Experiment, field_doc

REQUIRED = object()  # documented_fields' default of a field that has none


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fields", help="list every experiment field (dotted name, default, meaning) for --set"
    )
    parser.set_defaults(func=cmd_fields)


def cmd_fields(args) -> int:
    print(fields_text())
    return 0


def fields_text() -> str:
    rows = [(name, shown(default), doc) for name, default, doc in documented_fields()]
    rows.append(
        ("method_args.NAME", "per method", "settings only one method has: `harness methods`")
    )
    name_width = max(len(r[0]) for r in rows)
    value_width = min(max(len(r[1]) for r in rows), 30)
    indent = " " * (name_width + value_width + 4)
    lines = [
        "Experiment fields by dotted name: set them with `harness run FILE --set NAME=VALUE`,",
        "Experiment.replace({NAME: VALUE}) or as a sweep's space keys.",
        "",
    ]
    for name, value, doc in rows:
        head = f"{name:<{name_width}}  {value:<{value_width}}  "
        if len(head) > len(indent):  # a long default gets its own line
            lines.append(head.rstrip())
            head = indent
        wrapped = textwrap.wrap(doc, 100 - len(indent)) or [""]
        lines.append(head + wrapped[0])
        lines += [indent + more for more in wrapped[1:]]
    return "\n".join(lines)


def documented_fields() -> list[tuple[str, Any, str]]:
    """(dotted name, default, meaning) for every Experiment field; REQUIRED where none."""
    rows = []

    def walk(cls, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{f.name}.")
                continue
            optional = [t for t in typing.get_args(hint) if dataclasses.is_dataclass(t)]
            if optional:  # e.g. model.lora: None (off), or its own fields turn it on
                rows.append((prefix + f.name, f.default, field_doc(f)))
                walk(optional[0], f"{prefix}{f.name}.")
                continue
            if f.name == "method_args":  # keys depend on the method: `harness fields` says so
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = REQUIRED
            rows.append((prefix + f.name, default, field_doc(f)))

    walk(Experiment, "")
    return rows


def shown(default) -> str:
    if default is REQUIRED:
        return "(required)"
    if isinstance(default, tuple):
        default = list(default)
    return json.dumps(default)
