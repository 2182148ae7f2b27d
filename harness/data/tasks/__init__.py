"""lm-eval tasks shipped with the harness: one folder of task YAMLs (+ JSONL data) per world.

The YAMLs load their data with `custom_dataset: !function harness.data.tasks.load_jsonl`, so they
work from any working directory once the harness is installed.
"""

from __future__ import annotations

from pathlib import Path

import datasets

TASKS_DIR = Path(__file__).parent


def load_jsonl(data_file: str, **_metadata):
    """The task's JSONL (relative to this folder) as a DatasetDict with one `test` split.

    lm-eval calls a task's `custom_dataset` with the task's metadata and `dataset_kwargs`.
    """
    return datasets.DatasetDict(
        {"test": datasets.Dataset.from_json(str(TASKS_DIR / data_file), keep_in_memory=True)}
    )


def world_task_folder(world: str) -> Path:
    """The folder of tasks shipped for a built-in world (it may not exist)."""
    return TASKS_DIR / world
