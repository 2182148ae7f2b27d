"""Broken cache entries: each kind of cache file truncated or overwritten with garbage, a
missing or unreadable manifest. The entry is named in one line, rebuilt under the lock and
never used broken; a copied cache is reused as it is."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from harness.config import tags as tag
from harness.config.spec import DataSpec
from harness.data.models import load_causal_lm, load_tokenizer
from harness.data.preference import world_data
from harness.data.worlds import get_world
from harness.data.worlds.sentiment import SentimentSettings, SentimentWorld
from harness.evaluate.bench import plan_bench, reference_results
from harness.infra.cache import MANIFEST, cache_root, problem
from harness.infra.stores import open_store
from harness.methods.reward_model import reward_model_for
from tests.faults.helpers import experiment_file

pytestmark = pytest.mark.slow

# A world that builds in seconds: the cache logic is the same for every size.
TINY_WORLD = SentimentSettings(
    n_reviews=400, n_prompts=(24, 8), samples_per_prompt=2, max_new_tokens=8, sft_steps=8
)


def load_world(log):
    world = SentimentWorld(TINY_WORLD)
    folder = world.folder
    return folder, len(world.scored_samples("train"))


def load_reward_model(log):
    model = reward_model_for(
        world_data("tiny", SentimentWorld(TINY_WORLD), DataSpec(labels="deterministic")),
        backbone="world",
        log=log,
    )
    return model.path, model.accuracy


def load_bench_reference(log):
    world = SentimentWorld(TINY_WORLD)
    plan = plan_bench(("sentiment_positive_choice",), limit=4)
    model, tokenizer = load_causal_lm(world.reference_path), load_tokenizer(world.reference_path)
    results = reference_results(plan, model, tokenizer, str(world.reference_path), log=log)
    return None, sorted(results["results"])


def load_empty_store(log):
    """A new tracking store, made from the empty store's copy: its tables and indexes."""
    from tests.test_store_template import schema

    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "mlflow.db"
        open_store(f"sqlite:///{store}", log=log)
        return None, schema(store)


LOADERS = {
    "mlflow-schema": load_empty_store,
    "worlds": load_world,
    "reward_models": load_reward_model,
    "bench_reference": load_bench_reference,
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A cache holding one entry of each kind, built once; and what loading each returns."""
    root, before = tmp_path_factory.mktemp("cache"), os.environ["HARNESS_CACHE"]
    os.environ["HARNESS_CACHE"] = str(root)
    try:
        values = {kind: load(print)[1] for kind, load in LOADERS.items()}
    finally:
        os.environ["HARNESS_CACHE"] = before
    return root, values


def entry(root: Path, kind: str) -> Path:
    (folder,) = [p for p in (root / kind).rglob(MANIFEST)]
    return folder.parent


def truncate(path: Path) -> None:
    data = path.read_bytes()
    if path.suffix == ".jsonl":  # at a line boundary: still valid JSON lines, just fewer
        lines = data.splitlines(keepends=True)
        path.write_bytes(b"".join(lines[: len(lines) // 5]))
    else:
        path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))  # same size: only the checksum can tell


def delete(path: Path) -> None:
    path.unlink()


CASES = [
    ("mlflow-schema", "mlflow.db", truncate, "bytes, manifest says"),
    ("mlflow-schema", "mlflow.db", garbage, "does not match its checksum"),
    ("worlds", "samples_train.jsonl", truncate, "has 4 rows, manifest says 24"),
    ("worlds", "reference/model.safetensors", truncate, "bytes, manifest says"),
    ("worlds", "reference/model.safetensors", garbage, "does not match its checksum"),
    ("worlds", "reference/tokenizer.json", garbage, "does not match its checksum"),
    ("worlds", MANIFEST, delete, f"no {MANIFEST}"),
    ("worlds", MANIFEST, truncate, f"{MANIFEST} is unreadable"),
    ("reward_models", "model.safetensors", truncate, "bytes, manifest says"),
    ("reward_models", "model.safetensors", garbage, "does not match its checksum"),
    ("reward_models", "accuracy.json", garbage, "does not match its checksum"),
    ("bench_reference", "results.json", truncate, "bytes, manifest says"),
    ("bench_reference", "results.json", garbage, "does not match its checksum"),
]


@pytest.mark.parametrize(("kind", "name", "damage", "says"), CASES)
def test_broken_entry_is_named_and_rebuilt(
    built, tmp_path, capsys, monkeypatch, kind, name, damage, says, record_property
):
    root, values = built
    copy = tmp_path / "cache"
    shutil.copytree(root, copy)
    monkeypatch.setenv("HARNESS_CACHE", str(copy))
    folder = entry(copy, kind)
    damage(folder / name)
    lines: list[str] = []
    _, value = LOADERS[kind](lines.append)
    printed = [line for line in lines + capsys.readouterr().out.splitlines() if "cache:" in line]
    assert len(printed) == 1, printed
    assert str(folder) in printed[0] and name in printed[0] and says in printed[0], printed[0]
    assert value == values[kind], "rebuilt: the same content as before the damage"
    settings = json.loads((folder / MANIFEST).read_text())["settings"]
    assert problem(folder, settings) is None, "the rebuilt entry verifies"
    record_property("fault", f"{kind}: {name} {damage.__name__}")
    record_property("seen", printed[0].replace(str(copy), "$HARNESS_CACHE"))
    record_property("kept", "entry rebuilt under the lock (same content); never read broken")


def test_copied_cache_is_reused(built, tmp_path, capsys, monkeypatch, record_property):
    root, values = built
    copy = tmp_path / "elsewhere" / "cache"
    shutil.copytree(root, copy)
    monkeypatch.setenv("HARNESS_CACHE", str(copy))
    lines: list[str] = []
    got = {kind: load(lines.append)[1] for kind, load in LOADERS.items()}
    assert got == values
    assert not [line for line in lines + capsys.readouterr().out.splitlines() if "cache:" in line]
    record_property("fault", "the cache copied to another folder (keys hold no paths)")
    record_property("seen", "nothing: every entry reused")
    record_property("kept", "empty store, world, reward model and lm-eval reference results reused")


@pytest.mark.parametrize("damage", [truncate, garbage])
def test_broken_reference_logps_are_rebuilt_by_the_next_run(
    tmp_path, capsys, monkeypatch, damage, record_property
):
    """The reference log-prob cache of a real DPO run, damaged between two runs."""
    from mlflow.tracking import MlflowClient

    from harness.commands.cli import main

    cache = tmp_path / "cache"  # a copy of the built world, and a reference_logps of its own
    world = get_world("sentiment").folder  # built once for the session's cache
    shutil.copytree(world, cache / world.relative_to(cache_root()))
    monkeypatch.setenv("HARNESS_CACHE", str(cache))

    exp = experiment_file(tmp_path, "refcache", max_pairs=64)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["run", str(exp), "--tracking-uri", uri]) == 0
    capsys.readouterr()
    (npz,) = Path(os.environ["HARNESS_CACHE"]).glob("reference_logps/*/logps.npz")
    damage(npz)
    assert main(["run", str(exp), "--tracking-uri", uri]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if "cache:" in line]
    assert len(printed) == 1 and "logps.npz" in printed[0] and "rebuilding" in printed[0], printed
    runs = MlflowClient(uri).search_runs(["1"], order_by=["attributes.start_time DESC"])
    assert runs[0].info.status == "FINISHED" and runs[0].data.tags[tag.REFERENCE_CACHE] == "miss"
    record_property("fault", f"reference_logps: logps.npz {damage.__name__} between two runs")
    record_property("seen", printed[0].split(" is broken ")[1])
    record_property("kept", "second run FINISHED, its reference log-probs recomputed (tag miss)")
