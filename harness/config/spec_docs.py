"""The experiment fields' documentation, read from `harness.config.spec`'s own source: each field's
meaning is the comment beside or above it, so `harness fields` cannot drift from the code."""

from __future__ import annotations

import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from typing import Any

from harness.config.spec import Experiment


def field_docs(cls) -> dict[str, str]:
    """{field name: its meaning} read from the comments in `cls`'s source: the comment on the
    field's line, else the comment lines right above it (`harness fields` prints them)."""
    source = textwrap.dedent(inspect.getsource(cls))
    names = {f.name for f in dataclasses.fields(cls)}
    inline: dict[str, str] = {}
    above: dict[str, str] = {}
    block: list[str] = []
    current = None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            if current is not None:
                inline.setdefault(current, text)
            else:
                block.append(text)
        elif token.type == tokenize.NEWLINE:
            current = None
        elif token.type == tokenize.NL and current is None and token.line.strip() == "":
            block = []  # a blank line ends a comment block
        elif token.type == tokenize.NAME and token.start[1] == 4 and current is None:
            if token.string in names and token.line.lstrip().startswith(token.string + ":"):
                current = token.string
                above[current] = " ".join(block)
            block = []
    return {name: inline.get(name) or above.get(name, "") for name in names}


def documented_fields() -> list[tuple[str, Any, str]]:
    """(dotted name, default, meaning) for every Experiment field; REQUIRED where none."""
    rows = []

    def walk(cls, prefix: str) -> None:
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{f.name}.")
                continue
            optional = [t for t in typing.get_args(hint) if dataclasses.is_dataclass(t)]
            if optional:  # e.g. model.lora: None (off), or its own fields turn it on
                rows.append((prefix + f.name, f.default, docs[f.name]))
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
            rows.append((prefix + f.name, default, docs[f.name]))

    walk(Experiment, "")
    return rows


REQUIRED = object()  # documented_fields' default of a field that has none
