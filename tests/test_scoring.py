"""Scoring for real: the reward model on sentiment, win rates and lm-eval logged by `harness run`,
`harness eval` on a finished run (bundled and user tasks), and bad input refused up front."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from harness import Experiment, TrainSpec
from harness.commands.cli import main
from harness.config.spec import EvalSpec
from harness.data.preference import load_preference_data
from harness.evaluate.bench import BenchError, plan_bench
from harness.infra.stores import use_tracking
from harness.methods.reward_model import reward_model_for
from harness.run.recipe import run_experiment
from harness.run.rescore import RunError, score_run

pytestmark = pytest.mark.slow

SENTIMENT = Experiment(method="dpo", beta=0.1, dataset="sentiment")


def test_reward_model_learns_the_gold_ordering():
    """Held-out accuracy 0.755 measured with the default settings on world version 2 (chance
    0.5); 0.7 leaves room for thread and platform nondeterminism."""
    rm = reward_model_for(load_preference_data(SENTIMENT))
    assert rm.accuracy > 0.7
    gold_ordered = load_preference_data(SENTIMENT.replace({"data.labels": "deterministic"}))
    pairs = gold_ordered.eval_pairs
    prompts = [r["prompt"] for r in pairs]
    chosen = rm.score(prompts, [r["chosen"] for r in pairs])
    rejected = rm.score(prompts, [r["rejected"] for r in pairs])
    assert sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs) > 0.7
    # Batching pads: a text scored among longer ones gets the score it gets alone.
    alone = rm.score(prompts[:1], [pairs[0]["chosen"]])
    batched = rm.score(prompts[:1] + ["the movie was"], [pairs[0]["chosen"], " long . " * 8])
    assert batched[0] == pytest.approx(alone[0], abs=1e-5)


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    """One tiny DPO run that scores itself after training: (tracking uri, run id)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('scoring') / 'mlflow.db'}"
    use_tracking(uri, "scoring")
    exp = Experiment(
        method="dpo",
        beta=0.1,
        dataset="sentiment",
        train=TrainSpec(steps=4, batch_size=4, eval_every=2),
        eval=EvalSpec(
            n_prompts=8,
            n_pairs=8,
            max_new_tokens=8,
            winrate=True,
            temperatures=(0.0, 1.0),
            tasks=("sentiment_positive_choice",),
        ),
    )
    result = run_experiment(exp)
    yield uri, result.run_id
    while mlflow.active_run():
        mlflow.end_run()


def metrics_of(uri: str, run_id: str) -> dict[str, float]:
    mlflow.flush_async_logging()
    return MlflowClient(uri).get_run(run_id).data.metrics


def test_run_scores_itself_into_mlflow(scored_run):
    uri, run_id = scored_run
    metrics = metrics_of(uri, run_id)
    # The bundled choice task is balanced against the reference (0.5 on the one built here;
    # a world rebuilt on other hardware may differ by a few items).
    assert metrics["bench/sentiment_positive_choice/acc_reference"] == pytest.approx(0.5, abs=0.1)
    assert 0 <= metrics["bench/sentiment_positive_choice/acc"] <= 1
    assert "bench/sentiment_positive_choice/acc_stderr" in metrics
    for judge in ("rm", "gold"):
        for baseline in ("reference", "chosen"):
            name = f"winrate/{judge}/vs_{baseline}"
            assert metrics[f"{name}_ci_low"] <= metrics[name] <= metrics[f"{name}_ci_high"]
            assert metrics[name] == metrics[f"{name}/t1"]  # the headline is temperature 1
            assert f"{name}/t0" in metrics
    assert metrics["rm/accuracy"] > 0.7
    client = MlflowClient(uri)
    step = client.get_metric_history(run_id, "winrate/gold/vs_reference")[0].step
    assert step == 4  # logged once, at the final step
    table = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/winrate/completions.json"))
    assert {
        "prompt",
        "policy",
        "reference",
        "chosen",
        "policy_rm",
        "reference_gold",
        "chosen_gold",
    } <= set(table["columns"])
    assert len(table["data"]) == 2 * 8  # temperatures x prompts
    results = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/bench/results.json"))
    assert "acc,none" in results["results"]["sentiment_positive_choice"]


def test_harness_eval_adds_user_task_scores_to_the_run(scored_run, tmp_path, capsys):
    uri, run_id = scored_run
    data = tmp_path / "tasks" / "review_words.jsonl"
    data.parent.mkdir()
    data.write_text(
        "".join(
            json.dumps({"q": "the movie was", "choices": ["great .", "."], "label": 0}) + "\n"
            for _ in range(4)
        )
    )
    (tmp_path / "tasks" / "review_words.yaml").write_text(f"""
task: review_words
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{q}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
""")
    before = metrics_of(uri, run_id)
    code = main(
        [
            "eval",
            "--run-id",
            run_id,
            "--tasks",
            "review_words",
            "--include-path",
            str(tmp_path / "tasks"),
            "--temperatures",
            "0.5",
            "--judge",
            "gold",
            "--tracking-uri",
            uri,
        ]
    )
    assert code == 0, capsys.readouterr().err
    after = metrics_of(uri, run_id)
    assert "bench/review_words/acc" in after and "bench/review_words/acc_reference" in after
    assert "winrate/gold/vs_reference/t0.5" in after and "winrate/rm/vs_reference/t0.5" not in after
    assert set(before) < set(after)


def test_bad_input_is_refused_before_anything_is_logged(scored_run, tmp_path, capsys):
    uri, run_id = scored_run
    mlflow.set_tracking_uri(uri)
    before = metrics_of(uri, run_id)

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "task.yaml").write_text("just: a mapping\n")
    with pytest.raises(BenchError, match="no valid lm-eval task YAML"):
        plan_bench(("review_words",), include_path=str(tmp_path / "broken"))
    assert main(["eval", "--run-id", run_id, "--temperatures", "0,-1", "--tracking-uri", uri]) == 2
    assert "--temperatures must all be >= 0" in capsys.readouterr().err
    # Indexes lm-eval's ~14,700 own tasks before calling the name unknown (seconds).
    assert (
        main(
            [
                "eval",
                "--run-id",
                run_id,
                "--tasks",
                "sentiment_positive_choise",
                "--tracking-uri",
                uri,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown lm-eval task 'sentiment_positive_choise'" in err
    assert "Did you mean 'sentiment_positive_choice'" in err
    assert metrics_of(uri, run_id) == before

    with mlflow.start_run() as bare:  # a run with an experiment but no saved policy
        mlflow.log_text(SENTIMENT.to_json(), "experiment.json")
    with pytest.raises(RunError, match="has no saved policy"):
        score_run(bare.info.run_id, tracking_uri=uri)
    assert metrics_of(uri, bare.info.run_id) == {}


def test_pretrained_encoder_backbone_trains_and_scores():
    """MiniLM (a BERT: no EOS, [SEP] stands in) through the same path as any hub model."""
    from transformers import AutoModelForSequenceClassification

    from harness.methods.reward_model import RewardModelSettings

    few_steps = RewardModelSettings(epochs=0.05, batch_size=8, lr=5e-5)
    rm = reward_model_for(load_preference_data(SENTIMENT), backbone="minilm", settings=few_steps)
    assert 0 <= rm.accuracy <= 1
    assert AutoModelForSequenceClassification.from_pretrained(rm.path).config.num_labels == 1
    assert len(rm.score(["the movie was"] * 3, [" great .", " awful .", " long ."])) == 3
