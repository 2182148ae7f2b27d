"""What a researcher sees: run names, JSON params, dataset inputs and the policy as an MLflow
model read back from MLflow; the experiment's saved runs view; a quiet terminal; `harness
fields`; defaults a world supplies; a `--help` that imports no heavy library."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from harness import Experiment
from harness.commands.fields import fields_text
from harness.config.spec import ScoringRequest, SpecError, field_paths
from harness.evaluate.scoring import completions_table
from harness.infra.console import VERBOSE_ENV, library_output
from harness.infra.locations import mlflow_ui_hint, runs_page_url
from harness.infra.stores import POLICY_MODEL_TAG, UI_COLUMNS, param_value, use_tracking
from harness.methods.catalog import config_label
from harness.methods.checks import check_experiment, resolve, with_defaults

ROOT = Path(__file__).resolve().parents[1]
DPO = Experiment(method="dpo", beta=0.1, dataset="sentiment")


def test_params_are_json_and_strings_stay_strings():
    assert param_value("sentiment") == "sentiment"
    assert param_value(None) == "null"
    assert param_value(("rm", "gold")) == '["rm", "gold"]'
    assert param_value(True) == "true"
    assert json.loads(param_value(0.1)) == 0.1
    assert DPO.replace({"eval.judges": json.loads(param_value(("rm",)))}).eval.judges == ("rm",)


def test_names_say_what_a_run_is():
    assert resolve(DPO).name == "dpo-b0.1"
    assert resolve(DPO.replace({"method": "sft"})).name == "sft"  # beta does not enter sft training
    assert resolve(DPO.replace({"beta": 0.5})).name == "dpo-b0.5"  # a default name follows beta
    assert resolve(DPO.replace({"name": "mine"})).name == "mine"
    assert config_label(DPO.replace({"method": "ipo", "beta": 0.25})) == "ipo-b0.25"
    trial = resolve(DPO.replace({"method": "sft", "name": "mine"}), name_format="s-t3-{label}-s0")
    assert (trial.name, trial.experiment.name, trial.source.name) == ("s-t3-sft-s0",) * 2 + (
        "mine",
    )


def test_an_experiment_is_resolved_once_with_its_defaults_filled():
    resolved = resolve(DPO.replace({"method": "sft"}))
    assert resolved.experiment.eval.max_new_tokens == 24  # the general default, filled
    assert resolved.source.eval.max_new_tokens is None  # the experiment as written is kept
    assert resolved.method.name == "sft" and resolved.label == "sft"
    with pytest.raises(SpecError, match="method: unknown method 'dpoo'"):
        resolve(DPO.replace({"method": "dpoo"}))


def test_the_exact_world_supplies_the_one_valid_max_new_tokens():
    exact = Experiment(method="dpo", beta=0.1, dataset="exact")
    check_experiment(exact)
    assert with_defaults(exact).eval.max_new_tokens == 5
    assert with_defaults(DPO).eval.max_new_tokens == 24
    with pytest.raises(SpecError, match="eval.max_new_tokens must be 5 in the exact world"):
        check_experiment(exact.replace({"eval.max_new_tokens": 24}))


def test_fields_lists_every_settable_field_with_its_default_and_meaning():
    text = fields_text()
    rows = {line.split()[0]: line for line in text.splitlines() if line[:1].isalpha()}
    for path in field_paths(DPO):
        assert path in rows, f"{path} missing from `harness fields`"
        assert len(rows[path].split(maxsplit=2)) == 3, f"{path} has no meaning"
    assert '"bradley_terry"' in rows["data.labels"] and "(required)" in rows["method"]


def test_help_imports_no_heavy_library():
    code = (
        "import sys, contextlib, io\nfrom harness.commands.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['run', '--help'])\n"
        "print(sorted(m for m in ('torch', 'mlflow', 'transformers', 'trl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_experiment_opens_on_its_runs_with_the_harness_columns(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = use_tracking(uri, "view")
    tags = MlflowClient(uri).get_experiment(experiment_id).tags
    view = json.loads(tags["mlflow.sharedViewState.harness"])
    state = json.loads(view["state"])
    assert state["selectedColumns"] == list(UI_COLUMNS)
    assert "metrics.`eval/kl`" in UI_COLUMNS and "params.`method`" in UI_COLUMNS
    url = runs_page_url("http://127.0.0.1:5000", experiment_id)
    assert "workflowType=machine_learning" in url and "viewStateShareKey=harness" in url
    assert url in mlflow_ui_hint(uri, experiment_id)
    assert "open http://host:5000/#/" in mlflow_ui_hint("http://host:5000", experiment_id)


def test_completions_rows_line_up_across_runs():
    def table(policy):
        return {
            "temperature": [0.0, 0.0, 1.0, 1.0],
            "prompt": ["a", "b", "a", "b"],
            "policy": policy,
        }

    one, two = completions_table(table(list("wxyz"))), completions_table(table(list("pqrs")))
    assert list(one)[0] == "prompt_id" and list(one)[-1] == "scored_at"
    assert one["prompt_id"] == two["prompt_id"] == ["p000 t0", "p001 t0", "p000 t1", "p001 t1"]


def test_library_output_is_kept_back_unless_it_fails_or_verbose(capfd, monkeypatch):
    def library(fail: bool):
        subprocess.run(["sh", "-c", "echo 'fatal: not a git repository' >&2"])
        print("10%|##  | 1/10", file=sys.stderr)
        if fail:
            raise RuntimeError("broke")

    with library_output():
        library(fail=False)
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError), library_output():
        library(fail=True)
    assert "fatal: not a git repository" in capfd.readouterr().err  # shown with the failure
    monkeypatch.setenv(VERBOSE_ENV, "1")
    with library_output():
        library(fail=False)
    assert "1/10" in capfd.readouterr().err


# ---- a scored run, as a user runs it from a terminal outside any git checkout ----------------

NOISE = re.compile(r"it/s|s/it|\d+%\||fatal:|not a git repository|Running loglikelihood|Warning")


@pytest.fixture(scope="module")
def terminal_run(tmp_path_factory):
    """`harness run` on a tiny scored experiment: (tracking uri, run id, terminal output)."""
    folder = tmp_path_factory.mktemp("terminal")
    (folder / "tiny.py").write_text(
        "from harness import EvalSpec, Experiment, TrainSpec\n"
        "EXPERIMENTS = [Experiment(method='sft', beta=0.1, dataset='sentiment',\n"
        "    train=TrainSpec(steps=4, batch_size=4, eval_every=2),\n"
        "    eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8, winrate=True,\n"
        "                  temperatures=(1.0,), tasks=('world',), bench_limit=8))]\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        [sys.executable, "-m", "harness.commands.cli", "run", "tiny.py"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    uri = f"sqlite:///{folder / 'results' / 'mlflow.db'}"
    runs = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("tiny").experiment_id]
    )
    return uri, runs[0].info.run_id, out.stdout + out.stderr


@pytest.mark.slow
def test_a_scored_run_prints_only_the_harness_lines(terminal_run):
    _, _, text = terminal_run
    assert not NOISE.search(text), NOISE.search(text).group(0) + "\n" + text
    assert "[sft] step    4/4" in text and "scored in" in text
    assert "mlflow ui --backend-store-uri" in text and "viewStateShareKey=harness" in text


@pytest.mark.slow
def test_names_params_datasets_and_model_read_back_from_mlflow(terminal_run):
    uri, run_id, _ = terminal_run
    mlflow.set_tracking_uri(uri)
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.run_name == "sft"
    params = run.data.params
    assert params["dataset"] == "sentiment" and params["eval.judges"] == '["rm", "gold"]'
    assert params["eval.max_new_tokens"] == "8" and params["data.max_pairs"] == "null"
    inputs = {}
    for logged in run.inputs.dataset_inputs:
        tags = {t.key: t.value for t in logged.tags}
        inputs[tags["mlflow.data.context"]] = logged.dataset
        assert json.loads(logged.dataset.profile)["num_rows"] == int(tags["rows"]) > 0
    assert set(inputs) == {"train", "eval"}
    assert inputs["train"].name == "sentiment" and inputs["train"].source_type == "local"
    assert inputs["train"].digest != inputs["eval"].digest

    model_uri = run.data.tags[POLICY_MODEL_TAG]
    (logged,) = MlflowClient(uri).search_logged_models(experiment_ids=[run.info.experiment_id])
    assert logged.source_run_id == run_id and model_uri == logged.model_uri
    parts = mlflow.transformers.load_model(model_uri, return_type="components")
    assert parts["model"].num_parameters() > 0 and parts["tokenizer"] is not None
    version = mlflow.register_model(model_uri, "tiny-policy")
    assert int(version.version) == 1


@pytest.mark.slow
def test_harness_eval_loads_the_model_and_older_plain_policy_files(terminal_run, tmp_path):
    from harness.data.worlds import get_world
    from harness.run.rescore import load_run_policy, score_run

    uri, run_id, _ = terminal_run
    request = ScoringRequest(judges=("gold",), temperatures=(0.0,), tasks=())
    metrics = score_run(run_id, request, tracking_uri=uri)
    assert "winrate/gold/vs_reference/t0" in metrics

    # A run logged before the policy became an MLflow model: plain files under `policy/`.
    use_tracking(uri, "older")
    with mlflow.start_run() as old:
        mlflow.log_artifacts(str(get_world("sentiment").reference_path), "policy")
    base = get_world("sentiment").reference_path
    old_run = MlflowClient(uri).get_run(old.info.run_id)
    policy, tokenizer, adapter = load_run_policy(
        MlflowClient(uri), old_run, base, dtype=torch.float32, trust_remote_code=False
    )
    assert not adapter
    assert policy.num_parameters() > 0 and tokenizer("a b").input_ids
