"""Bad input and unusable stores: one line on stderr naming the file, line or store, exit 2,
before any model is loaded; nothing written to the store."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.commands.cli import main
from tests.faults.helpers import assert_one_line, harness_env

PAIR = {"prompt": "the movie was", "chosen": " great .", "rejected": " awful ."}


def definition(folder, dataset, **fields) -> str:
    """A definition file training DPO on `dataset` (a file) with a local model path."""
    extra = "".join(f", {k}={v}" for k, v in fields.items())
    path = folder / "exp.py"
    path.write_text(
        "from harness import Experiment, ModelSpec\n"
        f"EXP = Experiment(method='dpo', beta=0.1, dataset={str(dataset)!r},\n"
        f"    model=ModelSpec(name_or_path={str(folder)!r}){extra})\n"
    )
    return str(path)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_non_utf8_jsonl_names_file_and_line(tmp_path, tracking, capsys, record_property):
    data = tmp_path / "pairs.jsonl"
    rows = [json.dumps(PAIR).encode()] * 3 + [
        b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}'
    ]
    data.write_bytes(b"\n".join(rows) + b"\n")
    code, out, err = run_cli(capsys, "run", definition(tmp_path, data))
    line = assert_one_line(err, str(data), "line 4", "not UTF-8", "0xe9")
    assert code == 2 and "data: loading" in out and "step" not in out
    record_property("fault", "a .jsonl data file with a Latin-1 byte on line 4")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing trained or loaded")


def test_non_utf8_csv_names_file_and_line(tmp_path, tracking, capsys, record_property):
    data = tmp_path / "pairs.csv"
    data.write_bytes(b"prompt,chosen,rejected\nthe movie,great,awful\nthe film,\xff\xfe,bad\n")
    code, _, err = run_cli(capsys, "run", definition(tmp_path, data))
    line = assert_one_line(err, str(data), "line 3", "not UTF-8")
    assert code == 2
    record_property("fault", "a .csv data file with bytes 0xff 0xfe on line 3")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing trained or loaded")


def test_parquet_null_value_is_reported_as_null(tmp_path, tracking, capsys, record_property):
    data = tmp_path / "pairs.parquet"
    table = pa.table(
        {"prompt": ["a", "b", "c"], "chosen": [" x", None, " z"], "rejected": [" y", " w", " v"]}
    )
    pq.write_table(table, data)
    code, _, err = run_cli(capsys, "run", definition(tmp_path, data))
    line = assert_one_line(err, str(data), "row 1", "'chosen'", "null")
    assert code == 2 and "missing column" not in line
    record_property("fault", "a .parquet file whose row 1 has a null 'chosen'")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing trained or loaded")


def test_syntax_error_in_experiment_file_names_file_and_line(tmp_path, capsys, record_property):
    path = tmp_path / "broken.py"
    path.write_text(
        textwrap.dedent("""\
        from harness import Experiment

        DPO = Experiment(method="dpo",
                         beta=0.1 dataset="sentiment")
        """)
    )
    code, _, err = run_cli(capsys, "run", str(path))
    line = assert_one_line(err, str(path), "line 4")
    assert code == 2
    record_property("fault", "an experiment file with a missing comma (syntax error, line 4)")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing run")


def test_error_raised_by_experiment_file_names_its_line(tmp_path, capsys, record_property):
    path = tmp_path / "typo.py"
    path.write_text("from harness import Experiment\n\nDPO = Experiment(method='dpo', bta=0.1)\n")
    code, _, err = run_cli(capsys, "run", str(path))
    line = assert_one_line(err, str(path), "line 3", "TypeError")
    assert code == 2
    record_property("fault", "an experiment file whose line 3 raises (a misspelt keyword)")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing run")


def test_hub_dataset_offline_says_use_a_local_path(tmp_path, tracking, capsys, record_property):
    code, _, err = run_cli(
        capsys, "run", definition(tmp_path, "nobody/no-such-dataset"), "--tracking-uri", tracking
    )
    line = assert_one_line(err, "nobody/no-such-dataset", "offline: use a local path")
    assert code == 2
    record_property("fault", "a hub dataset id with the hub unreachable (HF_HUB_OFFLINE=1)")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing trained or loaded")


def test_dataset_too_small_to_estimate_says_so(tmp_path, tracking, capsys, record_property):
    data = tmp_path / "three.jsonl"
    data.write_text("".join(json.dumps(PAIR | {"prompt": f"prompt {i}"}) + "\n" for i in range(3)))
    code, out, err = run_cli(capsys, "run", definition(tmp_path, data))
    line = assert_one_line(err, str(data), "1 held-out prompt", "standard error")
    assert code == 2 and "nan" not in out
    record_property("fault", "a dataset of 3 rows (1 held-out prompt: a standard error of NaN)")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing trained; no NaN logged")


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_beta_refused_at_construction(capsys, record_property, value):
    code, _, err = run_cli(
        capsys, "run", "experiments.quickstart:DPO_SENTIMENT", "--set", f"beta={value}"
    )
    line = assert_one_line(err, "beta", "finite")
    assert code == 2
    record_property("fault", f"--set beta={value}")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing run")


def test_tracking_uri_under_a_file_fails_before_loading(tmp_path, capsys, record_property):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    uri = f"sqlite:///{blocker}/mlflow.db"
    code, out, err = run_cli(
        capsys, "run", "experiments.quickstart:DPO_SENTIMENT", "--tracking-uri", uri
    )
    line = assert_one_line(err, str(blocker), "not a folder")
    assert code == 2 and "data: loading" not in out
    record_property("fault", "a tracking URI whose parent folder is a file")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "nothing loaded")


def test_read_only_store_fails_before_loading(tmp_path, tmpfs, capsys, record_property):
    folder = tmpfs("16m", "store")
    uri = f"sqlite:///{folder}/mlflow.db"
    # An existing store with its tables, made by another process (this one would keep the
    # database open, and a busy file system cannot be remounted).
    subprocess.run(
        [sys.executable, "-c", f"from harness.infra.stores import open_store; open_store({uri!r})"],
        check=True,
        env=harness_env(),
    )
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    code, out, err = run_cli(
        capsys, "run", "experiments.quickstart:DPO_SENTIMENT", "--tracking-uri", uri
    )
    line = assert_one_line(err, uri, "cannot write", "Read-only file system")
    assert code == 2 and "data: loading" not in out
    record_property("fault", "a tracking store on a file system remounted read-only")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "the store untouched; nothing loaded")
