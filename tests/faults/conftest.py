"""Fault injection: each test breaks something for real and asserts what the user sees (exit
code, one line naming the thing) and what is kept (run status, saved policy, rebuilt cache).

Every test records `fault`, `seen` and `kept` with pytest's `record_property`;
`benchmarks/faults.py` runs this folder and turns them into results/benchmarks/faults.md.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs file systems (`mount(size)` -> folder); unmounted afterwards.

    CI runs as root; elsewhere the test is skipped, saying why."""
    mounted = []

    def mount(size: str, name: str = "tmpfs") -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)
