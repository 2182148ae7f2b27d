"""Best-of-n through the harness for real: the same run recipe and yardstick as every method,
read back from MLflow."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from analysis.figures import frontier
from analysis.load import load_runs
from analysis.style import method_colors
from harness import EvalSpec, Experiment, TrainSpec
from harness.commands.cli import main
from harness.config import tags as tag
from harness.config.metrics import (
    EVAL_GOLD_REWARD,
    EVAL_GOLD_REWARD_EXACT,
    EVAL_KL,
    EVAL_KL_EXACT,
    EVAL_PAIR_ACCURACY,
    RM_ACCURACY,
    winrate,
)
from harness.data.worlds import get_world
from harness.evaluate.best_of_n import kl_bound
from harness.infra.distributed import launch_command
from harness.infra.stores import use_tracking
from harness.run.recipe import run_experiment
from tests.faults.helpers import assert_one_line

N = 4


def bon(dataset: str, eval_spec: EvalSpec, method: str = "bon_gold") -> Experiment:
    return Experiment(
        method=method,
        beta=0.1,  # unused by best-of-n; a required field of every experiment
        dataset=dataset,
        method_args={"n": N},
        train=TrainSpec(save_policy=False),
        eval=eval_spec,
    )


@pytest.fixture(scope="module")
def sentiment_run(module_tracking):
    scoring = EvalSpec(
        n_prompts=16,
        n_pairs=8,
        max_new_tokens=8,
        winrate=True,
        temperatures=(1.0,),
        judges=("gold",),
    )
    exp = bon("sentiment", scoring)
    result = run_experiment(exp, log=lambda _: None)
    return MlflowClient(module_tracking).get_run(result.run_id), result


@pytest.mark.slow
def test_bon_gold_logs_the_bound_its_tag_and_win_rates(sentiment_run, tmp_path):
    run, result = sentiment_run
    metrics, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED" and run.info.run_name == f"bon_gold-n{N}"
    assert metrics[EVAL_KL] == pytest.approx(math.log(N) - (N - 1) / N)
    assert tags[tag.EVAL_KL_KIND].startswith("bound") and tags[tag.BEST_OF_N] == str(N)
    assert run.data.params["method_args.n"] == str(N)
    for baseline in ("reference", "chosen"):
        assert 0 <= metrics[winrate("gold", baseline)] <= 1
    # The gold reward picks, so best-of-4 beats the reference's own sample on most prompts.
    assert metrics[winrate("gold", "reference")] > 0.5
    assert EVAL_PAIR_ACCURACY not in metrics  # no log pi_bon of a given response
    client = MlflowClient()
    assert [m.step for m in client.get_metric_history(run.info.run_id, EVAL_KL)] == [0]
    path = client.download_artifacts(run.info.run_id, "samples.json", str(tmp_path))
    table = json.loads(Path(path).read_text())
    columns = table["columns"]
    rows = [dict(zip(columns, r, strict=True)) for r in table["data"]]
    assert {"policy", "reference", "policy_gold", "reference_gold"} <= set(columns)
    assert statistics.fmean(r["policy_gold"] for r in rows) > statistics.fmean(
        r["reference_gold"] for r in rows
    )


@pytest.mark.slow
def test_bon_gold_in_the_exact_world_logs_the_exact_kl(module_tracking):
    use_tracking(module_tracking, "test_best_of_n_run")  # the `tracking` tests switched away
    # Its own name: analysis keeps one run per (experiment, name), the sentiment run's too.
    exp = bon("exact", EvalSpec(n_prompts=64, n_pairs=8)).replace({"name": "bon_gold-exact"})
    result = run_experiment(exp, log=lambda _: None)
    metrics = MlflowClient(module_tracking).get_run(result.run_id).data.metrics
    assert 0 < metrics[EVAL_KL_EXACT] < metrics[EVAL_KL] == pytest.approx(kl_bound(N))
    world = get_world("exact")
    # The sampler's gold reward on 64 prompts is within 4 standard errors of the exact value
    # (the per-sample spread of the gold reward is below 1 in this world: se < 1/8).
    assert abs(metrics[EVAL_GOLD_REWARD] - metrics[EVAL_GOLD_REWARD_EXACT]) < 4 / 8
    reference_reward = json.loads((world.folder / "summary.json").read_text())["reference_reward"]
    assert metrics[EVAL_GOLD_REWARD_EXACT] > reference_reward


@pytest.mark.parametrize("n", ["0", "-3", "2.5"])
def test_n_below_one_is_a_one_line_error_before_compute(n, tracking, capsys):
    code = main(
        [
            "run",
            "experiments/quickstart.py",
            "--set",
            "method=bon_gold",
            "--set",
            f"method_args.n={n}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert_one_line(err, "method_args.n", "integer >= 1")


def test_bon_gold_on_data_without_a_gold_reward_is_a_one_line_error(tmp_path, tracking, capsys):
    data = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": f"movie {i} was", "chosen": " great .", "rejected": " bad ."} for i in range(20)
    ]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    definition = tmp_path / "exp.py"
    definition.write_text(
        "from harness import Experiment, ModelSpec\n"
        f"EXP = Experiment(method='bon_gold', beta=0.1, dataset={str(data)!r},\n"
        f"    model=ModelSpec(name_or_path={str(tmp_path)!r}))\n"
    )
    code = main(["run", str(definition)])
    assert code == 2
    assert_one_line(capsys.readouterr().err, "bon_gold", "gold reward", str(data))


@pytest.mark.slow
def test_the_frontier_figure_draws_best_of_n_as_a_curve_in_order_of_n(
    sentiment_run, module_tracking
):
    """Beside the n = 4 run, n = 1 and 2: the frontier figure's data holds the three bon points
    at the logged bound and reward, and its dashed curve passes through them in order of n."""
    use_tracking(module_tracking, "test_best_of_n_run")  # the `tracking` tests switched away
    for n in (1, 2):
        exp = bon("sentiment", EvalSpec(n_prompts=16, n_pairs=8, max_new_tokens=8))
        run_experiment(exp.replace({"method_args.n": n}), log=lambda _: None)
    data = load_runs(module_tracking).for_dataset("sentiment")
    plot = frontier.plot(data, method_colors(data.runs["method"]))
    drawn = plot.data[plot.data["method"] == "bon_gold"].sort_values("n")
    assert drawn["n"].tolist() == [1, 2, 4]
    assert drawn["kl"].tolist() == pytest.approx([kl_bound(n) for n in (1, 2, 4)])
    logged = data.runs.set_index("run_id")[f"metrics.{EVAL_GOLD_REWARD}"]
    assert drawn["reward"].tolist() == logged[drawn["run_id"]].tolist()
    (curve,) = [line for line in plot.figure.axes[0].lines if line.get_gid() == "curve:bon_gold"]
    assert list(curve.get_xdata()) == pytest.approx([kl_bound(n) for n in (1, 2, 4)])
    assert "KL bound" in curve.get_label()


@pytest.mark.slow
def test_bon_picks_by_a_reward_model_trained_on_the_pairs(module_tracking):
    use_tracking(module_tracking, "test_best_of_n_run")
    exp = bon("sentiment", EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8), method="bon")
    result = run_experiment(exp.replace({"method_args.n": 2}), log=lambda _: None)
    run = MlflowClient(module_tracking).get_run(result.run_id)
    assert run.info.run_name == "bon-n2" and run.data.tags[tag.BEST_OF_N] == "2"
    assert run.data.metrics[EVAL_KL] == pytest.approx(kl_bound(2))
    assert 0.5 < run.data.metrics[RM_ACCURACY] <= 1  # the picker's held-out pair accuracy


BON_STUDY = """
from harness import EvalSpec, Experiment, TrainSpec
BON = Experiment(method="bon_gold", beta=0.1, dataset="sentiment", method_args={"n": 2},
                 train=TrainSpec(save_policy=False),
                 eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8, n_table_rows=2))
"""


@pytest.mark.slow
def test_bon_on_two_processes_logs_one_run_with_one_process_numbers(tmp_path):
    """Best-of-n trains nothing: on two processes the main process samples and scores alone
    (the other waits), so the numbers are one process's, in one run. The two are started by
    `accelerate launch` itself, as a cluster script would (tests/test_processes.py goes through
    --processes): the main process prepares the data and judge in a plain child. The one
    process runs in this one."""
    study = tmp_path / "study.py"
    study.write_text(BON_STUDY)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = {}
    for processes in ("1", "2"):
        args = ["run", str(study), "--tracking-uri", store, "--mlflow-experiment", f"p{processes}"]
        if processes == "2":
            done = subprocess.run(
                launch_command(2, args), capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, done.stderr[-3000:]
        else:
            assert main(args) == 0
        client = MlflowClient(store)
        found = client.search_runs([client.get_experiment_by_name(f"p{processes}").experiment_id])
        assert len(found) == 1 and found[0].info.status == "FINISHED"
        runs[processes] = found[0]
    assert runs["2"].data.params["processes"] == "2"
    one, two = (runs[p].data.metrics for p in ("1", "2"))
    assert one.keys() == two.keys() and EVAL_GOLD_REWARD in one
    for name in one:
        assert two[name] == pytest.approx(one[name], abs=1e-6), name


@pytest.mark.slow
def test_bon_with_lora_samples_the_base_model(module_tracking):
    """A LoRA setting on best-of-n changes nothing (no adapter trains): the same samples and
    numbers as without it."""
    use_tracking(module_tracking, "test_best_of_n_run")
    exp = bon("sentiment", EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8))
    exp = exp.replace({"method_args.n": 2})
    plain = run_experiment(exp.replace({"name": "bon-plain"}), log=lambda _: None)
    lora = run_experiment(exp.replace({"name": "bon-lora", "model.lora.r": 8}), log=lambda _: None)
    client = MlflowClient(module_tracking)
    a, b = (client.get_run(r.run_id).data for r in (plain, lora))
    assert b.params["model.lora.r"] == "8"
    assert a.metrics == b.metrics
