"""Several processes through accelerate (DDP, gloo on CPU): one MLflow run, the same losses."""

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from harness.commands.cli import main
from harness.infra.distributed import check_processes, launch_command, round_robin
from tests.readback import metric_history

STUDY = """
from harness import EvalSpec, Experiment, TrainSpec
DPO = Experiment(method="dpo", beta=0.1, dataset="sentiment", name="ddp",
                 train=TrainSpec(steps=3, batch_size={batch}, eval_every=2, log_every=1),
                 eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8, n_table_rows=2))
"""


def test_sweep_workers_take_the_gpus_round_robin():
    assert round_robin(5, ["0", "1"]) == ["0", "1", "0", "1", "0"]
    assert round_robin(2, ["3"]) == ["3", "3"]
    assert round_robin(2, []) == [None, None]


def test_processes_must_be_positive():
    with pytest.raises(ValueError, match="--processes must be >= 1"):
        check_processes(0)


def test_the_relaunch_goes_through_accelerate_on_a_free_port():
    command = launch_command(2, ["run", "study.py"])
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "2"
    assert command[-4:] == ["-m", "harness", "run", "study.py"]
    assert launch_command(2, [])[command.index("--main_process_port") + 1].isdigit()


def run_study(tmp_path, tracking, batch: int, *extra: str) -> str:
    """`harness run` of the study with `batch`: in its own process with `extra` arguments (the
    relaunch needs one), else in this one."""
    study = tmp_path / f"study{batch}.py"
    study.write_text(STUDY.format(batch=batch))
    args = ["run", str(study), "--tracking-uri", tracking, "--mlflow-experiment", f"b{batch}"]
    if extra:
        command = [sys.executable, "-m", "harness.commands.cli", *args, *extra]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        said = (done.stdout[-3000:], done.stderr[-3000:])
    else:
        assert main(args) == 0
        said = ()
    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name(f"b{batch}").experiment_id])
    # one experiment is one MLflow run, whatever the number of processes
    assert len(runs) == 1, (
        [(r.info.run_name, r.info.status, r.data.tags.get("mlflow.source.name")) for r in runs],
        said,
    )
    return runs[0].info.run_id


@pytest.mark.slow
def test_two_processes_log_one_run_matching_one_process_with_twice_the_batch(tmp_path, tracking):
    two = run_study(tmp_path, tracking, 4, "--processes", "2")
    one = run_study(tmp_path, tracking, 8)
    history = {run: metric_history(run) for run in (one, two)}
    for name, points in history[two].items():  # every metric once per step
        steps = [step for step, _ in points]
        assert len(steps) == len(set(steps)), (name, steps)
    assert set(history[two]) == set(history[one])
    assert [s for s, _ in history[two]["eval/kl"]] == [0, 2, 3]
    losses = {run: [v for _, v in history[run]["train/loss"]] for run in (one, two)}
    assert len(losses[two]) == 3
    assert losses[two][0] == pytest.approx(losses[one][0], abs=1e-6) == pytest.approx(0.693147)
    # DDP averages the two halves' gradients: the same steps as one process with twice the batch.
    assert losses[two] == pytest.approx(losses[one], abs=1e-5), losses
    params = MlflowClient(tracking).get_run(two).data.params
    assert params["processes"] == "2" and params["effective_batch"] == "8"
    assert MlflowClient(tracking).get_run(one).data.params["effective_batch"] == "8"


def test_more_processes_than_gpus_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # this machine has no GPU
    with pytest.raises(ValueError, match="--processes 4: this machine has 2 visible GPU"):
        check_processes(4)
    check_processes(2)
