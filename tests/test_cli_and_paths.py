"""The command line, and hub-style loading by path: a tiny model and a data file saved locally."""

import json
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from harness import EvalSpec, Experiment, ModelSpec, TrainSpec
from harness.commands.cli import main
from harness.data.models import build_tiny_gpt2
from harness.data.worlds.sentiment import train_word_tokenizer
from harness.infra.stores import use_tracking
from harness.run.recipe import run_experiment
from tests.readback import metric_history

TINY = [
    "--set",
    "train.steps=2",
    "--set",
    "train.batch_size=4",
    "--set",
    "train.eval_every=0",
    "--set",
    "eval.n_prompts=4",
    "--set",
    "eval.n_pairs=4",
    "--set",
    "eval.max_new_tokens=6",
]


@pytest.fixture
def definitions(tmp_path):
    path = tmp_path / "mystudy.py"
    path.write_text(
        textwrap.dedent("""
        from harness import Experiment
        LOW = Experiment(name="low", method="dpo", beta=0.1, dataset="sentiment")
        HIGH = Experiment(name="high", method="ipo", beta=0.5, dataset="sentiment")
    """)
    )
    return path


@pytest.mark.slow
def test_run_every_experiment_of_a_file_with_overrides(tracking, definitions, capsys):
    assert (
        main(["run", str(definitions), *TINY, "--set", "beta=0.3", "--tracking-uri", tracking]) == 0
    )
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name("mystudy")  # default: the file's stem
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["experiment"] for r in runs) == ["high", "low"]
    assert {r.data.params["beta"] for r in runs} == {"0.3"}
    assert {r.data.params["train.steps"] for r in runs} == {"2"}
    out = capsys.readouterr().out
    assert "ui --backend-store-uri " + tracking in out and "low" in out and "high" in out


def test_bad_targets_and_overrides_fail_before_any_compute(tracking, definitions, capsys):
    assert main(["run", f"{definitions}:MISSING", "--tracking-uri", tracking]) == 2
    assert "has no 'MISSING'; it defines LOW, HIGH" in capsys.readouterr().err
    assert (
        main(["run", str(definitions), "--set", "train.stpes=3", "--tracking-uri", tracking]) == 2
    )
    assert "Did you mean 'train.steps'" in capsys.readouterr().err
    assert main(["run", "nowhere.py"]) == 2
    assert "definition file 'nowhere.py' does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_one_object_by_module_name(tracking, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)  # honoured without --tracking-uri
    assert (
        main(["run", "experiments.quickstart:DPO_SENTIMENT", *TINY, "--mlflow-experiment", "one"])
        == 0
    )
    runs = MlflowClient(tracking).search_runs(
        [MlflowClient(tracking).get_experiment_by_name("one").experiment_id]
    )
    assert [r.data.tags["experiment"] for r in runs] == ["dpo-b0.1"]


@pytest.mark.slow
def test_model_and_data_loaded_by_local_path(tracking, tmp_path):
    """The hub code path (from_pretrained, load_dataset) on a model and a file saved locally."""
    rows = [
        {"prompt": f"the movie {i} was", "chosen": " great .", "rejected": " awful ."}
        for i in range(40)
    ]
    data_file = tmp_path / "pairs.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = train_word_tokenizer([r["prompt"] + r["chosen"] + r["rejected"] for r in rows])
    build_tiny_gpt2(tokenizer, n_embd=32, n_layer=1, n_head=2).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    exp = Experiment(
        method="dpo",
        beta=0.1,
        dataset=str(data_file),
        model=ModelSpec(name_or_path=str(tmp_path / "model")),
        train=TrainSpec(steps=3, batch_size=4, eval_every=0, lr=1e-2),
        eval=EvalSpec(n_prompts=4, n_pairs=4, max_new_tokens=4),
    )
    use_tracking(tracking, "by-path")
    history = metric_history(run_experiment(exp, log=lambda _: None).run_id)
    assert "eval/gold/reward" not in history  # a file dataset has no gold reward
    margins = dict(history["eval/rewards/margins"])
    assert margins[3] > margins[0] == 0.0  # DPO learned the file's preference
    assert history["data/train_rows"] == [(0, 36.0)] and history["data/eval_pairs"] == [(0, 4.0)]


def test_world_model_needs_a_world_dataset(tracking, tmp_path):
    from harness.data.preference import DataError

    data_file = tmp_path / "pairs.jsonl"
    data_file.write_text(
        "".join(
            json.dumps({"prompt": f"a{i}", "chosen": "b", "rejected": "c"}) + "\n"
            for i in range(20)  # 2 held-out prompts: enough to evaluate
        )
    )
    with pytest.raises(DataError, match="model.name_or_path='world' needs a built-in world"):
        run_experiment(Experiment(method="dpo", beta=0.1, dataset=str(data_file)))


CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}assistant : {% endif %}"


def test_conversational_data_is_evaluated_through_the_chat_template(tmp_path):
    from harness.data.preference import load_preference_data
    from harness.evaluate import Evaluator
    from harness.methods.checks import resolve

    rows = [
        {
            "prompt": [{"role": "user", "content": f"movie {i} ?"}],
            "chosen": [{"role": "assistant", "content": "great ."}],
            "rejected": [{"role": "assistant", "content": "awful ."}],
        }
        for i in range(40)
    ]
    data_file = tmp_path / "chat.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = train_word_tokenizer(
        [f"user : movie {i} ? assistant : great . awful ." for i in range(40)]
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    model = build_tiny_gpt2(tokenizer, n_embd=32, n_layer=1, n_head=2)
    exp = Experiment(
        method="dpo",
        beta=0.1,
        dataset=str(data_file),
        model=ModelSpec(name_or_path="unused"),
        eval=EvalSpec(n_prompts=4, n_pairs=4, max_new_tokens=4),
    )
    data = load_preference_data(exp)
    evaluator = Evaluator(resolve(exp), data, tokenizer, model)
    assert all(
        p.startswith("user : movie ") and p.endswith("assistant : ") for p in evaluator.prompts
    )
    metrics, _ = evaluator.evaluate(model)
    assert metrics["eval/kl"] == 0.0 and metrics["eval/rewards/margins"] == 0.0
