"""Datasets by name: built-in worlds, local files (JSONL, JSON, Parquet, CSV) and hub ids.

Every row is checked before training; an error names the file, the row and the column. Rows
that are filtered (ties, caps, ...) are counted by reason and logged, never dropped silently.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from harness.config.errors import UserError
from harness.config.registry import did_you_mean
from harness.config.spec import DataSpec, Experiment
from harness.data.worlds import WORLDS, get_world

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

# Row formats, in TRL's vocabulary; `formats_of` tells which one a row is.
PAIRED = "paired"  # prompt, chosen, rejected (strings, or message lists: conversational)
UNPAIRED = "unpaired"  # prompt, completion, label (KTO's native format)
PROMPT_ONLY = "prompt_only"  # prompt alone (on-policy methods)


class DataError(UserError, ValueError):
    """A dataset that cannot be used; the message names the file, row and column."""


@dataclass
class PreferenceData:
    """What training and evaluation need from a dataset."""

    source: str
    format: str
    train: list[dict]
    eval_pairs: list[dict]  # held-out paired rows (for implicit rewards); empty when not paired
    # Held-out prompts to sample from: strings, or message lists (conversational).
    eval_prompts: list
    gold: Callable[[list[str], list[str]], list[float]] | None = None
    world: object | None = None
    filtered: Counter = field(default_factory=Counter)
    # Held-out pairs neither of whose responses is trained on (World.new_pairs): the exact world.
    new_pairs: list[dict] = field(default_factory=list)


def check_dataset_name(name: str) -> None:
    """Raise ValueError unless `name` is a world, an existing data file, or a hub id."""
    if name in WORLDS:
        return
    path = Path(name)
    if path.suffix in FILE_SUFFIXES or "/" in name and path.exists():
        if not path.exists():
            raise DataError(f"data file {name!r} does not exist")
        return
    if HUB_ID.match(name):
        return
    raise DataError(
        f"unknown dataset {name!r}: expected a built-in world ({', '.join(WORLDS)}), a file "
        f"ending in {', '.join(FILE_SUFFIXES)}, or a hub id 'org/name'."
        + did_you_mean(name, WORLDS)
    )


def load_preference_data(exp: Experiment) -> PreferenceData:
    """The experiment's dataset: train rows, held-out pairs and prompts, what was filtered."""
    if exp.dataset in WORLDS:
        data = world_data(exp.dataset, get_world(exp.dataset), exp.data)
    else:
        rows = read_rows(exp.dataset)
        fmt = check_rows(rows, exp.dataset)
        data = split_rows(exp.dataset, fmt, rows, exp.data.eval_fraction)
    if exp.data.max_pairs is not None and len(data.train) > exp.data.max_pairs:
        data.filtered["over_max_pairs"] += len(data.train) - exp.data.max_pairs
        data.train = data.train[: exp.data.max_pairs]
    return data


def world_data(source: str, world, spec: DataSpec) -> PreferenceData:
    """A built-in world's pairs labelled as `spec` says, its held-out prompts and gold reward."""
    train, filtered = world.pairs("train", spec)
    eval_pairs, _ = world.pairs("eval", spec)
    return PreferenceData(
        source=source,
        format=PAIRED,
        train=train,
        eval_pairs=eval_pairs,
        eval_prompts=world.prompts("eval"),
        gold=world.gold_reward,
        world=world,
        filtered=filtered,
        new_pairs=world.new_pairs(spec),
    )


def read_rows(source: str) -> list[dict]:
    """Rows of a local file or folder (`save_to_disk`) or a hub dataset's train split."""
    path = Path(source)
    if path.suffix in FILE_SUFFIXES and path.is_dir() and not _saved_dataset(path):
        raise DataError(f"{path} is a folder, not a {path.suffix} file: pass the file itself")
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    if path.exists() or path.suffix in FILE_SUFFIXES:
        return _read_with_datasets(path)
    return _read_hub(source)


def _read_hub(source: str) -> list[dict]:
    try:
        return list(datasets.load_dataset(source, split="train"))
    except Exception as err:  # the hub client raises many types; say what the user can do
        if not (isinstance(err, ConnectionError) or os.environ.get("HF_HUB_OFFLINE") == "1"):
            raise DataError(f"dataset {source!r}: {type(err).__name__}: {err}") from None
        raise DataError(
            f"dataset {source!r} is a hub id and the hub cannot be reached (offline: use a local "
            "path; where the hub is reachable, save it with datasets.load_dataset(...)"
            ".save_to_disk(DIR) and pass DIR, or a .jsonl/.parquet file)"
        ) from None


def _decode(line: bytes, path: Path, line_no: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: line {line_no} is not UTF-8 text (byte 0x{line[err.start]:02x} at "
            f"column {err.start + 1}); save the file as UTF-8"
        ) from None


def _check_utf8(path: Path) -> None:
    """Name the file and line of the first byte that is not UTF-8 (readers say neither)."""
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, 1):
            _decode(line, path, line_no)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    rows = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            line = _decode(raw, path, line_no)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {line_no} is not valid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}: line {line_no} is a {type(row).__name__}, expected an object"
                )
            rows.append(row)
    return rows


def _saved_dataset(path: Path) -> bool:
    """Whether the folder `path` holds a dataset written by `save_to_disk`."""
    return any((path / name).is_file() for name in ("dataset_dict.json", "state.json"))


def _read_with_datasets(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    if path.suffix in (".json", ".csv"):
        _check_utf8(path)
    if path.is_file() and _holds_no_rows(path):
        raise DataError(f"{path}: no rows")
    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
            ds = ds["train"] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            ds = _load_file(path)
    except Exception as err:  # every reader raises its own type; name the file either way
        raise DataError(
            f"{path}: could not be parsed as {path.suffix or 'a dataset folder'} ({err})"
        ) from None
    return list(ds)


def _load_file(path: Path):
    """A .json/.csv/.parquet file through `datasets`, which keeps a parsed copy in its cache
    (under $HF_HOME): an unreadable copy is rebuilt from the file, and only a file that still
    fails to parse is the file's fault."""
    builder = {".json": "json", ".parquet": "parquet", ".csv": "csv"}[path.suffix]
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as err:
        ds = datasets.load_dataset(
            builder, data_files=str(path), split="train", download_mode="force_redownload"
        )
        print(
            f"cache: the datasets cache of {path} under {datasets.config.HF_DATASETS_CACHE} was "
            f"unreadable ({type(err).__name__}): rebuilt it from the file"
        )
        return ds


def _holds_no_rows(path: Path) -> bool:
    """An empty file, a .json holding `[]`, a .csv of a header alone, a 0-row .parquet (the
    readers fail on these with messages that do not say so)."""
    if path.suffix == ".parquet":
        try:
            return pq.read_metadata(path).num_rows == 0
        except Exception:  # not a parquet file: the reader names the problem
            return False
    if path.stat().st_size > 1 << 16:
        return False
    text = path.read_text(encoding="utf-8").strip()
    if path.suffix == ".csv":
        return len([line for line in text.splitlines() if line.strip()]) <= 1
    return text in ("", "[]")


def row_format(row: dict) -> str:
    if "chosen" in row or "rejected" in row:
        return PAIRED
    if "completion" in row or "label" in row:
        return UNPAIRED
    return PROMPT_ONLY


REQUIRED = {
    PAIRED: ("chosen", "rejected"),
    UNPAIRED: ("prompt", "completion", "label"),
    PROMPT_ONLY: ("prompt",),
}
# How to turn rows of one format into another, for the error when a method cannot use a dataset.
CONVERSIONS = {
    (PAIRED, UNPAIRED): "trl.unpair_preference_dataset(dataset) makes each pair a desirable and "
    "an undesirable row",
    (UNPAIRED, PAIRED): "pair a desirable (label true) with an undesirable (label false) "
    "completion of the same prompt into {prompt, chosen, rejected}",
    (PROMPT_ONLY, PAIRED): "sample two completions per prompt and label the preferred one, "
    "into {prompt, chosen, rejected}",
    (PROMPT_ONLY, UNPAIRED): "sample completions per prompt and label each desirable or not, "
    "into {prompt, completion, label}",
}


TEXT_COLUMNS = ("prompt", "chosen", "rejected", "completion")


def check_rows(rows: list[dict], source: str) -> str:
    """Validate every row against the format of the first; return that format."""
    if not rows:
        raise DataError(f"{source}: no rows")
    fmt = row_format(rows[0])
    kinds = {c: _text_kind(rows[0][c]) for c in TEXT_COLUMNS if rows[0].get(c) is not None}
    for i, row in enumerate(rows):
        where = f"{source}: row {i}"
        for column in _required(fmt, row):
            if column not in row:
                raise DataError(
                    f"{where}: missing column {column!r} (a {fmt} row needs "
                    f"{_required(fmt, row)}{_PROMPT_NOTE if column == 'prompt' else ''})"
                )
            if row[column] is None:
                raise DataError(f"{where}, column {column!r}: the value is null (empty)")
        for column in TEXT_COLUMNS:
            if column in row and row[column] is not None:
                at = f"{where}, column {column!r}"
                _check_text(row[column], at)
                _check_kind(row[column], kinds.setdefault(column, _text_kind(row[column])), at)
        if fmt == UNPAIRED and not isinstance(row["label"], bool):
            raise DataError(
                f"{where}, column 'label': expected true or false, got {row['label']!r}"
            )
        if fmt == PAIRED and row["chosen"] == row["rejected"]:
            raise DataError(
                f"{where}: 'chosen' is identical to 'rejected', so it states no preference"
            )
    return fmt


# Conversational pairs may hold their prompt in the messages before the answer; string pairs
# cannot (the held-out prompts to sample from would be missing).
_PROMPT_NOTE = "; only message-list pairs may leave the prompt inside chosen and rejected"


def _required(fmt: str, row: dict) -> tuple[str, ...]:
    if fmt == PAIRED and isinstance(row.get("chosen"), str):
        return ("prompt", *REQUIRED[PAIRED])
    return REQUIRED[fmt]


def _text_kind(value) -> str:
    return "a string" if isinstance(value, str) else "a message list"


def _check_kind(value, expected: str, where: str) -> None:
    """Every row holds the same kind of text in a column as the first (TRL formats a dataset by
    its first row: a message list among strings fails inside training)."""
    kind = _text_kind(value)
    if kind != expected:
        raise DataError(
            f"{where}: {kind}, but row 0 holds {expected}: every row must hold the same kind "
            "(all strings, or all message lists)"
        )


def _check_text(value, where: str) -> None:
    """A non-empty string, or a non-empty list of {role, content} messages (conversational)."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: empty string")
        return
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in value
        )
    ):
        return
    raise DataError(
        f"{where}: expected a non-empty string or a list of {{role, content}} messages, "
        f"got {type(value).__name__} {str(value)[:60]!r}"
    )


def split_rows(source: str, fmt: str, rows: list[dict], eval_fraction: float) -> PreferenceData:
    """Hold out a fixed share of prompts (seed 0, so every run of a study sees the same split)."""
    prompts = sorted({json.dumps(r.get("prompt"), sort_keys=True) for r in rows})
    random.Random(0).shuffle(prompts)
    held_out = set(prompts[: max(1, round(len(prompts) * eval_fraction))])
    train, held = [], []
    for row in rows:
        (held if json.dumps(row.get("prompt"), sort_keys=True) in held_out else train).append(row)
    if not train:
        raise DataError(f"{source}: too few prompts to hold out {eval_fraction:.0%} for evaluation")
    # Conversational prompts stay message lists here; prompt_text renders them for a model.
    unique = {json.dumps(held_prompt(r), sort_keys=True): held_prompt(r) for r in held}
    eval_prompts = [p for p in unique.values() if p]
    if not eval_prompts:
        raise DataError(f"{source}: the held-out rows have no prompts to sample from")
    return PreferenceData(
        source=source,
        format=fmt,
        train=train,
        eval_pairs=held if fmt == PAIRED else [],
        eval_prompts=eval_prompts,
    )


def held_prompt(row: dict):
    """A row's prompt; for conversational pairs without one, the messages before the answer."""
    if row.get("prompt"):
        return row["prompt"]
    chosen = row.get("chosen")
    return chosen[:-1] if isinstance(chosen, list) and len(chosen) > 1 else None


def prompt_text(prompt, tokenizer) -> str:
    """A prompt as the model reads it: strings unchanged, message lists via the chat template."""
    if isinstance(prompt, str):
        return prompt
    if tokenizer.chat_template is None:
        raise DataError("conversational prompts need a tokenizer with a chat template")
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
