"""Broken stores, paths and data, and experiments that pass construction but not a run: each
ends in one line naming the store, file, row or run, exit 2 (bad input) or 1 (a run that
failed), before a run is created where the fault can be seen before it."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from harness.data.preference import read_rows
from harness.data.worlds import get_world
from harness.infra import databases
from harness.infra.cache import MANIFEST
from harness.infra.locations import free_port, sqlite_path
from tests.faults.helpers import assert_one_line, experiment_file, harness_env
from tests.faults.test_user_errors import PAIR, definition, run_cli

QUICKSTART = "experiments.quickstart:DPO_SENTIMENT"


def pairs_file(folder, name: str, rows: list[dict]):
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def string_pairs(n: int = 20) -> list[dict]:
    return [PAIR | {"prompt": f"prompt {i}"} for i in range(n)]


def no_runs(uri: str) -> bool:
    if not sqlite_path(uri).exists():  # never opened: failed before the store was touched
        return True
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return not experiments or not client.search_runs(experiments)


# ---- stores ----------------------------------------------------------------------------------


def test_corrupt_sqlite_store_is_named(tmp_path, capsys, record_property):
    db = tmp_path / "mlflow.db"
    db.write_bytes(os.urandom(8192))
    code, out, err = run_cli(capsys, "run", QUICKSTART, "--tracking-uri", f"sqlite:///{db}")
    line = assert_one_line(err, str(db), "not a readable SQLite database", "move it aside")
    assert code == 2 and "data: loading" not in out
    record_property("fault", "the tracking store's SQLite file overwritten with random bytes")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "the file untouched; nothing loaded")


def test_another_applications_sqlite_file_is_not_taken_over(tmp_path, capsys, record_property):
    db = tmp_path / "notes.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
    before = db.read_bytes()
    code, out, err = run_cli(capsys, "run", QUICKSTART, "--tracking-uri", f"sqlite:///{db}")
    line = assert_one_line(err, str(db), "another application's database", "notes")
    assert code == 2 and "data: loading" not in out
    assert db.read_bytes() == before, "MLflow's tables were not added to it"
    record_property("fault", "a tracking URI naming another application's SQLite database")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "that database byte for byte unchanged")


HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute(sys.argv[2])
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("begin", ["BEGIN EXCLUSIVE", "BEGIN IMMEDIATE"])
def test_store_locked_by_another_process(tmp_path, capsys, monkeypatch, begin, record_property):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    subprocess.run(  # an MLflow store with its tables, as a previous run left it
        [sys.executable, "-c", f"from harness.infra.stores import open_store; open_store({uri!r})"],
        check=True,
        env=harness_env(),
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db), begin], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(databases, "LOCK_WAIT_SECONDS", 1)
        code, out, err = run_cli(capsys, "run", QUICKSTART, "--tracking-uri", uri)
    finally:
        holder.kill()
        holder.wait()
    line = assert_one_line(err, str(db), "locked by another process")
    assert code == 2 and "data: loading" not in out
    record_property("fault", f"the SQLite store held by another process ({begin})")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "nothing loaded; the other process's transaction untouched")


def test_unreachable_postgresql_tracking_uri(capsys, record_property):
    uri = f"postgresql://harness:pa/ss#wd@127.0.0.1:{free_port()}/mlflow"
    started = time.monotonic()
    code, out, err = run_cli(capsys, "run", QUICKSTART, "--tracking-uri", uri)
    line = assert_one_line(err, "cannot connect", "127.0.0.1", "database server running")
    assert code == 2 and "data: loading" not in out and time.monotonic() - started < 30
    assert "pa/ss#wd" not in err + out, "the password is masked"
    record_property("fault", "a PostgreSQL tracking URI where no server listens")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing loaded; the password masked")


@pytest.mark.parametrize("form", ["path", "file"])
def test_plain_folder_tracking_uri_says_how_to_migrate(tmp_path, capsys, form, record_property):
    folder = tmp_path / "mlruns"
    (folder / "0").mkdir(parents=True)
    uri = str(folder) if form == "path" else folder.as_uri()
    code, out, err = run_cli(capsys, "run", QUICKSTART, "--tracking-uri", uri)
    line = assert_one_line(err, uri, "file store", "mlflow migrate-filestore", str(folder))
    assert code == 2 and "data: loading" not in out
    record_property("fault", f"a plain folder as tracking URI ({form})")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "the folder untouched")


def test_harness_cache_naming_a_file(tmp_path, tracking, capsys, monkeypatch, record_property):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HARNESS_CACHE", str(blocker))
    code, out, err = run_cli(capsys, "run", QUICKSTART, "--tracking-uri", tracking)
    line = assert_one_line(err, str(blocker), "HARNESS_CACHE", "not a folder")
    assert code == 2 and "data: loading" not in out and no_runs(tracking)
    record_property("fault", "$HARNESS_CACHE pointing at a file")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "nothing loaded, no run")


# ---- data files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pairs.jsonl", "pairs.json"])
def test_dataset_path_that_is_a_folder(tmp_path, tracking, capsys, name, record_property):
    data = tmp_path / name
    data.mkdir()
    code, _, err = run_cli(capsys, "run", definition(tmp_path, data))
    line = assert_one_line(err, str(data), "is a folder")
    assert code == 2 and no_runs(tracking)
    record_property("fault", f"the dataset path is a folder named {name}")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "nothing loaded, no run")


def empty_json(path):
    path.write_text("")


def empty_list_json(path):
    path.write_text("[]\n")


def header_only_csv(path):
    path.write_text("prompt,chosen,rejected\n")


def zero_row_parquet(path):
    empty = pa.array([], pa.string())
    pq.write_table(pa.table({"prompt": empty, "chosen": empty, "rejected": empty}), path)


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("pairs.json", empty_json),
        ("pairs.json", empty_list_json),
        ("pairs.csv", empty_json),
        ("pairs.csv", header_only_csv),
        ("pairs.parquet", zero_row_parquet),
    ],
)
def test_empty_file_says_no_rows(tmp_path, tracking, capsys, name, write, record_property):
    data = tmp_path / name
    write(data)
    code, _, err = run_cli(capsys, "run", definition(tmp_path, data))
    line = assert_one_line(err, str(data), "no rows")
    assert code == 2 and "()" not in line
    record_property("fault", f"a {name} with no rows ({write.__name__})")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "nothing loaded, no run")


def test_one_message_list_among_string_rows(tmp_path, tracking, capsys, record_property):
    rows = string_pairs()
    rows[7]["chosen"] = [{"role": "assistant", "content": "great ."}]
    data = pairs_file(tmp_path, "mixed.jsonl", rows)
    code, _, err = run_cli(capsys, "run", definition(tmp_path, data))
    line = assert_one_line(err, str(data), "row 7", "'chosen'", "message list", "string")
    assert code == 2 and no_runs(tracking)
    record_property("fault", "row 7's 'chosen' a message list, every other row a string")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "nothing loaded, no run")


def test_string_pairs_without_a_prompt_column(tmp_path, tracking, capsys, record_property):
    rows = [{"chosen": f"prompt {i} great .", "rejected": f"prompt {i} awful ."} for i in range(20)]
    data = pairs_file(tmp_path, "noprompt.jsonl", rows)
    code, _, err = run_cli(capsys, "run", definition(tmp_path, data))
    line = assert_one_line(err, str(data), "row 0", "missing column 'prompt'")
    assert code == 2 and "hold out" not in line
    record_property("fault", "string pairs without a 'prompt' column")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "nothing loaded, no run")


def test_conversational_pairs_on_a_model_without_chat_template(
    tmp_path, tracking, capsys, record_property
):
    model = get_world("sentiment").reference_path  # a tokenizer with no chat template

    def turn(role, text):
        return [{"role": role, "content": text}]

    rows = [
        {
            "prompt": turn("user", f"review {i}"),
            "chosen": turn("assistant", "great ."),
            "rejected": turn("assistant", "awful ."),
        }
        for i in range(20)
    ]
    data = pairs_file(tmp_path, "chat.jsonl", rows)
    path = tmp_path / "exp.py"
    path.write_text(
        "from harness import Experiment, ModelSpec\n"
        f"EXP = Experiment(method='dpo', beta=0.1, dataset={str(data)!r},\n"
        f"    model=ModelSpec(name_or_path={str(model)!r}))\n"
    )
    code, _, err = run_cli(capsys, "run", str(path), "--tracking-uri", tracking)
    line = assert_one_line(err, str(data), "chat template", f"model.name_or_path={str(model)!r}")
    assert code == 2 and no_runs(tracking), "failed before any run was created"
    record_property("fault", "message-list pairs on a model whose tokenizer has no chat template")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "no run created (none FAILED)")


def test_garbage_in_the_datasets_cache_is_rebuilt(tmp_path, monkeypatch, capsys, record_property):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(string_pairs()))
    first = read_rows(str(data))
    arrows = list((tmp_path / "hf-datasets").rglob("*.arrow"))
    assert arrows, "datasets cached the parsed file"
    for arrow in arrows:
        arrow.write_bytes(os.urandom(arrow.stat().st_size))
    assert read_rows(str(data)) == first, "rebuilt from the file: the same rows"
    lines = [line for line in capsys.readouterr().out.splitlines() if "cache:" in line]
    assert len(lines) == 1 and str(data) in lines[0] and "rebuilt" in lines[0], lines
    assert read_rows(str(data)) == first and "cache:" not in capsys.readouterr().out
    record_property("fault", "the datasets cache's .arrow of a .json file overwritten with garbage")
    record_property("seen", lines[0].replace(str(tmp_path), "$TMP"))
    record_property("kept", "the cache rebuilt from the user's file; the same rows")


@pytest.mark.parametrize("label", [True, False])
def test_kto_data_with_one_label_only(tmp_path, tracking, capsys, label, record_property):
    rows = [{"prompt": f"prompt {i}", "completion": " great .", "label": label} for i in range(20)]
    data = pairs_file(tmp_path, "kto.jsonl", rows)
    path = tmp_path / "exp.py"
    path.write_text(
        "from harness import Experiment, ModelSpec\n"
        f"EXP = Experiment(method='kto', beta=0.1, dataset={str(data)!r},\n"
        f"    model=ModelSpec(name_or_path={str(tmp_path)!r}))\n"
    )
    code, _, err = run_cli(capsys, "run", str(path), "--tracking-uri", tracking)
    line = assert_one_line(err, str(data), f"label {str(label).lower()}", "'kto'")
    assert code == 2 and no_runs(tracking)
    record_property("fault", f"KTO data whose labels are all {str(label).lower()}")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "nothing trained, no run")


# ---- experiments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "value", "says"),
    [
        ("EXP", "float('nan')", "beta must be a finite number, got nan"),
        ("EXP.train", "0", "train.steps"),
    ],
)
def test_experiment_altered_after_construction(
    tmp_path, tracking, capsys, target, value, says, record_property
):
    path = experiment_file(tmp_path, "altered")
    field = "beta" if target == "EXP" else "steps"
    with open(path, "a") as f:
        f.write(f"object.__setattr__({target}, {field!r}, {value})\n")
    code, out, err = run_cli(capsys, "run", str(path), "--tracking-uri", tracking)
    line = assert_one_line(err, says)
    assert code == 2 and "data: loading" not in out and no_runs(tracking)
    record_property("fault", f"object.__setattr__({target}, {field!r}, {value}) after construction")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing run")


def test_two_experiments_of_one_name(tmp_path, tracking, capsys, record_property):
    path = tmp_path / "twins.py"
    path.write_text(
        "from harness import Experiment\n"
        "A = Experiment(name='twin', method='dpo', beta=0.1, dataset='sentiment')\n"
        "B = Experiment(name='twin', method='ipo', beta=0.5, dataset='sentiment')\n"
    )
    code, out, err = run_cli(capsys, "run", str(path), "--tracking-uri", tracking)
    line = assert_one_line(err, str(path), "'twin'", "dpo beta=0.1", "ipo beta=0.5")
    assert code == 2 and "data: loading" not in out and no_runs(tracking)
    record_property("fault", "two experiments of one file with the same name")
    record_property("seen", f"exit {code}: {line.replace(str(tmp_path), '$TMP')}")
    record_property("kept", "nothing run")


# ---- slow: a trained run, a reward model, a world build --------------------------------------


@pytest.mark.slow
def test_sft_loss_exploding_is_caught_as_divergence(tmp_path, tracking, capsys, record_property):
    path = experiment_file(tmp_path, "explode", steps=3, log_every=1)
    path.write_text(path.read_text().replace("method='dpo'", "method='sft'"))
    code, out, err = run_cli(
        capsys, "run", str(path), "--tracking-uri", tracking, "--set", "train.lr=1e3"
    )
    line = assert_one_line(err, "training diverged at step 2", "training loss grew", "train.lr")
    (run,) = MlflowClient(tracking).search_runs(
        [MlflowClient(tracking).search_experiments()[0].experiment_id]
    )
    assert code == 1 and run.info.status == "FAILED"
    assert "TrainingDiverged" in run.data.tags["error"]
    record_property("fault", "sft at train.lr=1e3: the loss stays finite and grows to ~1e8")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "run FAILED at step 2 with the reason; nothing saved")


@pytest.mark.slow
def test_truncated_policy_weights_on_eval(tmp_path, tracking, capsys, record_property):
    path = experiment_file(tmp_path, "cut", steps=2)
    assert run_cli(capsys, "run", str(path), "--tracking-uri", tracking)[0] == 0
    client = MlflowClient(tracking)
    (run,) = client.search_runs([client.get_experiment_by_name("cut").experiment_id])
    (weights,) = (tmp_path / "artifacts").rglob("model.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    code, _, err = run_cli(
        capsys, "eval", "--run-id", run.info.run_id, "--tracking-uri", tracking, "--judge", "gold"
    )
    line = assert_one_line(err, run.info.run_id, "cannot be loaded", "train the run again")
    after = client.get_run(run.info.run_id)
    assert code == 2 and (after.info.status, after.info.end_time) == ("FINISHED", run.info.end_time)
    record_property("fault", "`harness eval` of a run whose saved model.safetensors is truncated")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "run still FINISHED, same end time, nothing logged")


@pytest.mark.slow
def test_full_disk_while_caching_the_reward_model(tmpfs, monkeypatch, record_property):
    from harness.config.errors import disk_errno
    from harness.config.spec import DataSpec
    from harness.data.preference import world_data
    from harness.data.worlds.sentiment import SentimentWorld
    from harness.methods.reward_model import reward_model_for
    from tests.faults.test_cache import TINY_WORLD

    cache = tmpfs("64m", "cache")
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    data = world_data("tiny", SentimentWorld(TINY_WORLD), DataSpec(labels="deterministic"))
    used = subprocess.run(["du", "-sk", str(cache)], capture_output=True, text=True).stdout
    # room for the reward model's config and tokenizer, not for its weights
    size = f"size={int(used.split()[0]) + 512}k"
    subprocess.run(["mount", "-o", f"remount,{size}", str(cache)], check=True)
    with pytest.raises(OSError) as caught:
        reward_model_for(data, backbone="world", log=lambda line: None)
    err = caught.value
    assert disk_errno(err) == errno.ENOSPC and "SafetensorError" in repr(err.__cause__)
    assert "reward_models/" in str(err) and str(cache) in str(err)
    left = [p.name for p in (cache / "reward_models").iterdir() if p.suffix != ".lock"]
    assert not left, "nothing half-written kept"
    record_property("fault", "the disk fills while the reward model's weights are cached")
    record_property("seen", f"exit 1: harness: error: {err}".replace(str(cache), "$CACHE"))
    record_property("kept", "no partial cache entry (its lock file only)")


BUILD_WORLD = """
from harness.data.worlds.sentiment import SentimentWorld
from tests.faults.test_cache import TINY_WORLD
SentimentWorld(TINY_WORLD).folder
"""


@pytest.mark.slow
def test_build_killed_midway_leaves_no_folder_behind(tmp_path, monkeypatch, record_property):
    from harness.data.worlds.sentiment import SentimentWorld
    from tests.faults.test_cache import TINY_WORLD

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    builder = subprocess.Popen(
        [sys.executable, "-c", BUILD_WORLD],
        env=harness_env() | {"HARNESS_CACHE": str(tmp_path / "cache")},
    )
    root = tmp_path / "cache" / "worlds" / "sentiment"
    deadline = time.monotonic() + 120
    while not list(root.glob(".*-build-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    builder.send_signal(signal.SIGKILL)  # at once: the tiny world builds in about a second
    builds = list(root.glob(".*-build-*"))
    assert builds, "the build started"
    builder.wait()
    assert all(b.exists() for b in builds), "SIGKILL left its build folder"
    folder = SentimentWorld(TINY_WORLD).folder
    assert (folder / MANIFEST).is_file()
    assert not list(root.glob(".*-build-*")) and not list(root.glob(".*-broken-*"))
    record_property("fault", "SIGKILL while a world is being built into the cache")
    record_property("seen", "the next build removes the dead build's folder")
    record_property("kept", "one verified entry, no .KEY-build-* folder left")
