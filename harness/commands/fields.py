"""`harness fields`: every experiment field by dotted name, with its default and meaning.

Generated from `harness.config.spec` (the dataclasses and their comments, read by
`harness.config.spec_docs`), so it cannot drift from what `--set NAME=VALUE`, `Experiment.replace`
and sweep spaces accept.
"""

from __future__ import annotations

import json
import textwrap

from harness.config.spec_docs import REQUIRED, documented_fields


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


def shown(default) -> str:
    if default is REQUIRED:
        return "(required)"
    if isinstance(default, tuple):
        default = list(default)
    return json.dumps(default)
