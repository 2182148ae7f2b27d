"""Every module imports: a missing import fails here first, not in the middle of a run."""

import importlib
import pkgutil

import pytest

import analysis
import experiments
import harness


def _modules(package):
    yield package.__name__
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not info.name.endswith("__main__"):  # importing it would run the command
            yield info.name


@pytest.mark.parametrize("name", [m for p in (harness, experiments, analysis) for m in _modules(p)])
def test_module_imports(name):
    importlib.import_module(name)
