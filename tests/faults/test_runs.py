"""Runs under faults: every run ends with the status its fate deserves, the trained policy
survives a failure after training, and scoring never changes a run's status or end time."""

from __future__ import annotations

import json
import shutil
import signal
import textwrap
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from harness.commands.cli import main
from harness.infra.stores import POLICY_ARTIFACT, POLICY_MODEL_TAG
from tests.faults.helpers import assert_one_line, experiment_file, start_harness, wait_for_line

pytestmark = pytest.mark.slow


def broken_task_folder(folder):
    """An lm-eval task whose YAML is valid but whose data file is not JSON: it fails only
    when run, after training (the harness checks task names and YAMLs up front)."""
    folder.mkdir()
    (folder / "broken_task.jsonl").write_text("this line is not JSON\n")
    (folder / "broken_task.yaml").write_text(
        textwrap.dedent(f"""\
        task: broken_task
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {folder / "broken_task.jsonl"}
        output_type: multiple_choice
        test_split: test
        doc_to_text: "{{{{context}}}}"
        doc_to_choice: "{{{{choices}}}}"
        doc_to_target: label
        metric_list:
          - metric: acc
        """)
    )
    return folder


def the_run(uri: str, name: str):
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], f"attributes.run_name = '{name}'"
    )
    return run


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    return broken_task_folder(tmp_path_factory.mktemp("tasks") / "broken")


def test_scoring_failure_keeps_the_policy_and_eval_scores_the_failed_run(
    tmp_path, store, tasks, capsys, record_property
):
    exp = experiment_file(tmp_path, "scorefail")
    code, _, err = run_cli(
        capsys,
        "run",
        str(exp),
        "--tracking-uri",
        store,
        "--set",
        "eval.tasks=broken_task",
        "--set",
        f"eval.include_path={tasks}",
    )
    line = assert_one_line(err, "broken_task")
    run = the_run(store, "scorefail")
    client = MlflowClient(store)
    policy = {a.path for a in client.list_artifacts(run.info.run_id, POLICY_ARTIFACT)}
    assert code == 2 and run.info.status == "FAILED" and "BenchError" in run.data.tags["error"]
    assert f"{POLICY_ARTIFACT}/MLmodel" in policy and POLICY_MODEL_TAG in run.data.tags
    record_property("fault", "an lm-eval task whose data file is not JSON, scored after training")
    record_property("seen", f"exit {code}: {line}")

    code, out, err = run_cli(
        capsys,
        "eval",
        "--run-id",
        run.info.run_id,
        "--tracking-uri",
        store,
        "--tasks",
        "none",
        "--judge",
        "gold",
        "--temperatures",
        "1",
    )
    after = client.get_run(run.info.run_id)
    assert code == 0, err[-2000:]
    assert after.info.status == "FAILED" and after.info.end_time == run.info.end_time
    assert "winrate/gold/vs_reference" in after.data.metrics
    record_property(
        "kept",
        "run FAILED with its policy/ saved; `harness eval` scored that policy, the run stayed "
        "FAILED with its end time",
    )


def test_failed_eval_leaves_a_finished_run_untouched(
    tmp_path, store, tasks, capsys, record_property
):
    code, _, err = run_cli(
        capsys, "run", str(experiment_file(tmp_path, "good")), "--tracking-uri", store
    )
    assert code == 0, err[-2000:]
    run = the_run(store, "good")
    assert run.info.status == "FINISHED"
    code, _, err = run_cli(
        capsys,
        "eval",
        "--run-id",
        run.info.run_id,
        "--tracking-uri",
        store,
        "--tasks",
        "broken_task",
        "--include-path",
        str(tasks),
        "--judge",
        "gold",
    )
    line = assert_one_line(err, "broken_task")
    after = MlflowClient(store).get_run(run.info.run_id)
    assert code == 2
    assert (after.info.status, after.info.end_time) == ("FINISHED", run.info.end_time)
    assert after.data.metrics.keys() == run.data.metrics.keys(), "nothing half-logged"
    assert "scoring" not in after.data.tags
    record_property("fault", "`harness eval` of a FINISHED run with a broken lm-eval task")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", "run still FINISHED, same end time, no metric or tag added")


def test_divergence_stops_at_the_step_and_names_it(tmp_path, store, capsys, record_property):
    exp = experiment_file(tmp_path, "diverge", steps=40, eval_every=20, log_every=10)
    code, out, err = run_cli(
        capsys, "run", str(exp), "--tracking-uri", store, "--set", "train.lr=1e6"
    )
    line = assert_one_line(err, "training diverged at step", "non-finite", "train.lr")
    step = int(line.split("at step ")[1].split(":")[0])
    run = the_run(store, "diverge")
    assert (
        code == 1 and run.info.status == "FAILED" and "TrainingDiverged" in run.data.tags["error"]
    )
    assert step < 20, "stopped at the step, not at the next evaluation"
    assert "step   20" not in out
    record_property("fault", "train.lr=1e6: gradients become NaN within a few steps")
    record_property("seen", f"exit {code}: {line}")
    record_property("kept", f"run FAILED at step {step} (evaluation was due at 20)")


def unsaved_policy_left(uri: str, run, folder) -> list[str]:
    """What a failed save may have left: files under the experiment's `models/` (MLflow 3
    writes a logged model there, not under the run's artifacts) or `<run>/artifacts/policy`,
    and logged models of the run that are not READY."""
    left = [str(p) for p in (folder / "models").rglob("*") if p.is_file()]
    left += [str(p) for p in (folder / run.info.run_id / "artifacts" / POLICY_ARTIFACT).rglob("*")]
    models = MlflowClient(uri).search_logged_models([run.info.experiment_id])
    left += [f"model {m.model_id} {m.status}" for m in models if str(m.status) != "READY"]
    return left


def test_full_disk_while_saving_the_policy(tmp_path, tmpfs, capsys, record_property):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = tmpfs("1m", "artifacts")  # the policy's safetensors alone is ~2.5 MB
    exp = experiment_file(tmp_path, "fulldisk")
    code, _, err = run_cli(capsys, "run", str(exp), "--tracking-uri", uri)
    line = assert_one_line(err, "policy could not be saved", "No space left on device")
    run = the_run(uri, "fulldisk")
    folder = artifacts / "fulldisk"
    assert code == 1 and run.info.status == "FAILED"
    assert not unsaved_policy_left(uri, run, folder)
    assert not [p for p in (folder / run.info.run_id).iterdir() if p.name.startswith(".policy-")]
    assert shutil.disk_usage(artifacts).used < 512 * 1024, "the disk is free again"
    record_property("fault", "artifacts on a 1 MB tmpfs: the disk fills while saving the policy")
    record_property("seen", f"exit {code}: {line}")
    record_property(
        "kept",
        "run FAILED; no half-written model under <experiment>/models/ or policy/, no logged "
        "model left PENDING or FAILED, the disk free again",
    )


def test_sigint_while_saving_the_policy(tmp_path, record_property):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = experiment_file(tmp_path, "ctrlc-save")
    process = start_harness("run", str(exp), "--tracking-uri", uri, cwd=tmp_path)
    client, deadline = MlflowClient(uri), time.monotonic() + 600
    while True:  # MLflow creates the logged model PENDING, then saves and uploads its files
        experiment = client.get_experiment_by_name("ctrlc-save")
        models = client.search_logged_models([experiment.experiment_id]) if experiment else []
        if any(str(m.status) == "PENDING" for m in models):
            process.send_signal(signal.SIGINT)
            break
        assert not models and process.poll() is None and time.monotonic() < deadline, models
        time.sleep(0.02)
    _, err = process.communicate(timeout=600)
    line = assert_one_line(err, "interrupted", "marked KILLED")
    run = the_run(uri, "ctrlc-save")
    assert process.returncode == 130 and run.info.status == "KILLED"
    assert not unsaved_policy_left(uri, run, tmp_path / "artifacts" / "ctrlc-save")
    assert POLICY_MODEL_TAG not in run.data.tags
    record_property("fault", "SIGINT (Ctrl-C) to `harness run` while it saves the policy")
    record_property("seen", f"exit {process.returncode}: {line}")
    record_property(
        "kept", "run KILLED; no logged model left PENDING, no partial files under models/"
    )


def test_sigint_marks_the_run_killed(tmp_path, record_property):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = experiment_file(tmp_path, "ctrlc", steps=100000, eval_every=0)
    process = start_harness("run", str(exp), "--tracking-uri", uri, cwd=tmp_path)
    wait_for_line(process, "step    0/")
    time.sleep(2)  # into training
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=600)  # a loaded machine finishes the step first
    line = assert_one_line(err, "interrupted", "marked KILLED")
    run = the_run(uri, "ctrlc")
    assert process.returncode == 130 and run.info.status == "KILLED"
    assert run.data.tags["error"].startswith("interrupted")
    record_property("fault", "SIGINT (Ctrl-C) to `harness run` while it trains")
    record_property("seen", f"exit {process.returncode}: {line}")
    record_property("kept", "run KILLED with its end time, an error tag 'interrupted'")


def test_sigkill_run_is_marked_killed_by_the_next_command(tmp_path, capsys, record_property):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = experiment_file(tmp_path, "killed", steps=100000, eval_every=0)
    process = start_harness("run", str(exp), "--tracking-uri", uri, cwd=tmp_path)
    wait_for_line(process, "step    0/")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    run = the_run(uri, "killed")
    assert run.info.status == "RUNNING", "nothing could end it"
    code, out, err = run_cli(capsys, "eval", "--run-id", run.info.run_id, "--tracking-uri", uri)
    reaped = [line for line in out.splitlines() if run.info.run_id in line]
    after = MlflowClient(uri).get_run(run.info.run_id)
    assert len(reaped) == 1 and "marked KILLED" in reaped[0] and "is gone" in reaped[0]
    assert after.info.status == "KILLED" and after.info.end_time is not None
    assert_one_line(err, "has no saved policy")  # the command itself then goes on as usual
    assert code == 2
    record_property("fault", "SIGKILL to `harness run` while it trains (nothing can clean up)")
    record_property("seen", f"the next command (`harness eval`) printed: {reaped[0]}")
    record_property("kept", "run KILLED, end time = its last heartbeat")


def test_long_held_out_rows_are_truncated_and_counted(tmp_path, capsys, record_property):
    from harness.data.worlds import get_world

    reference = get_world("sentiment").reference_path  # 96 positions
    rows = []
    for i in range(40):
        long = " the movie was great ." * (30 if i % 4 == 0 else 1)  # ~150 tokens every 4th row
        rows.append({"prompt": f"review {i} :", "chosen": long, "rejected": " the movie was bad ."})
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "long.py"
    path.write_text(
        "from harness import EvalSpec, Experiment, ModelSpec, TrainSpec, DataSpec\n"
        f"EXP = Experiment(name='long', method='dpo', beta=0.1, dataset={str(data)!r},\n"
        f"    model=ModelSpec(name_or_path={str(reference)!r}), data=DataSpec(eval_fraction=0.5),\n"
        "    train=TrainSpec(steps=2, batch_size=4, eval_every=0),\n"
        "    eval=EvalSpec(n_prompts=4, max_new_tokens=8))\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = run_cli(capsys, "run", str(path), "--tracking-uri", uri)
    assert code == 0, err[-3000:]
    run = the_run(uri, "long")
    truncated = run.data.metrics["data/truncated/eval_pairs"]
    assert run.info.status == "FINISHED" and truncated >= 1
    assert "held-out rows cut to fit" in out
    record_property("fault", "held-out pairs of ~150 tokens on a model with 96 positions")
    record_property("seen", "exit 0; a line 'held-out rows cut to fit (...)'")
    record_property("kept", f"run FINISHED; data/truncated/eval_pairs = {truncated:g}")


def test_reaper_leaves_live_runs_alone(tmp_path):
    """A RUNNING run whose process lives (this one) is not reaped."""
    from harness.infra.stores import Heartbeat, open_store, use_tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    use_tracking(uri, "reaper")
    with mlflow.start_run() as active, Heartbeat(active.info.run_id):
        open_store(uri)
        assert MlflowClient(uri).get_run(active.info.run_id).info.status == "RUNNING"


def test_a_bug_inside_training_shows_its_traceback(tmp_path, store, capsys, monkeypatch):
    """A ValueError from a library (here torch's gradient clipping) is a bug, not bad input:
    exit 1 with the traceback, and the run FAILED with the error tagged."""
    import torch

    def broken(*args, **kwargs):
        raise ValueError("a library bug")

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", broken)
    exp = experiment_file(tmp_path, "library-bug", steps=4, eval_every=4, log_every=2)
    code, _, err = run_cli(capsys, "run", str(exp), "--tracking-uri", store)
    run = the_run(store, "library-bug")
    assert code == 1, err[-3000:]
    assert "Traceback" in err and "ValueError: a library bug" in err
    assert run.info.status == "FAILED" and "ValueError: a library bug" in run.data.tags["error"]
