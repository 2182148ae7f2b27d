"""Find experiment (or sweep) objects in a definition file or module.

Targets: `experiments/quickstart.py` (every object of the kind in the file, or its module-level
lists) or `experiments.quickstart:DPO_SENTIMENT` (one named object, or a list).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

from harness.config.errors import UserError


class DefinitionError(UserError, ValueError):
    """A definition target that does not name usable objects."""


def load_module(target: str):
    """Import a module from a .py path or a dotted module name."""
    if target.endswith(".py"):
        path = Path(target)
        if not path.exists():
            raise DefinitionError(f"definition file {target!r} does not exist")
        name = f"_harness_defs_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except SyntaxError as err:
            raise DefinitionError(f"{path}: line {err.lineno}: {err.msg}") from None
        except Exception as err:  # the file's own code failed: name its line, not importlib's
            raise DefinitionError(f"{path}: line {_line_in(err, path)}: {_describe(err)}") from None
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as err:
        raise DefinitionError(f"definition module {target!r} not found ({err})") from None


def _line_in(err: Exception, path: Path) -> int | str:
    """The line of `path` where `err` was raised (the last frame of the traceback in that file)."""
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(err.__traceback__)
        if Path(frame.filename).resolve() == path.resolve()
    ]
    return lines[-1] if lines else "?"


def _describe(err: Exception) -> str:
    # The harness's own errors (SpecError) already read as sentences; others need their type.
    return str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"


def load_objects(target: str, kind: type) -> tuple[list, str]:
    """(objects of `kind` named by target, default MLflow experiment name: the file's stem)."""
    module_part, _, attr = target.partition(":")
    module = load_module(module_part)
    stem = Path(module_part).stem if module_part.endswith(".py") else module_part.rsplit(".", 1)[-1]
    if attr:
        if not hasattr(module, attr):
            found = [n for n, v in vars(module).items() if _holds(v, kind)]
            raise DefinitionError(
                f"{module_part} has no {attr!r}; it defines {', '.join(found) or 'nothing usable'}"
            )
        objects = _flatten(getattr(module, attr), kind)
        if not objects:
            raise DefinitionError(f"{target} is not a {kind.__name__} or a list of them")
    else:
        objects = []
        for value in vars(module).values():
            for obj in _flatten(value, kind):
                if all(obj is not seen for seen in objects):
                    objects.append(obj)
        if not objects:
            raise DefinitionError(f"{module_part} defines no {kind.__name__}")
    return objects, stem


def _holds(value, kind) -> bool:
    return bool(_flatten(value, kind))


def _flatten(value, kind) -> list:
    if isinstance(value, kind):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, kind) for v in value):
        return list(value)
    return []
