"""Each method's data: conversions to its trainer's format, and refusals before any training."""

from __future__ import annotations

import json
from collections import Counter

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from harness import DataSpec, EvalSpec, Experiment, ModelSpec, TrainSpec
from harness.commands.cli import main
from harness.config.metrics import train_metric_name
from harness.config.spec import SpecError
from harness.data.preference import PAIRED, PROMPT_ONLY, UNPAIRED, DataError, PreferenceData
from harness.data.worlds import get_world
from harness.methods.catalog import METHODS, Method, flat_params
from harness.methods.checks import check_experiment, check_method_accepts
from harness.methods.trainers import (
    chosen_rows,
    continuations,
    dpo_trainer,
    prompt_rows,
    unpaired_rows,
)
from harness.run.recipe import run_experiment

PAIRS = [{"prompt": f"p{i}", "chosen": f" good {i}", "rejected": f" bad {i}"} for i in range(20)]
UNPAIRED_ROWS = [
    {"prompt": "p0", "completion": " good", "label": True},
    {"prompt": "p0", "completion": " bad", "label": False},
    {"prompt": "p1", "completion": " fine", "label": True},
]
CHAT = [{"role": "user", "content": "Hi?"}]
ROWS = {PAIRED: PAIRS, UNPAIRED: UNPAIRED_ROWS, PROMPT_ONLY: [{"prompt": "p0"}, {"prompt": "p1"}]}


def data(fmt: str, gold=None) -> PreferenceData:
    return PreferenceData(
        source="rows.jsonl", format=fmt, train=ROWS[fmt], eval_pairs=[], eval_prompts=[], gold=gold
    )


# ---- conversions ---------------------------------------------------------------------------


def test_kto_rows_from_pairs_are_unpaired_and_shuffled():
    rows = list(unpaired_rows(data(PAIRED), seed=0))
    assert len(rows) == 2 * len(PAIRS)
    assert Counter(r["label"] for r in rows) == {True: 20, False: 20}
    # TRL alone gives 20 desirable rows then 20 undesirable ones; shuffled, the first half mixes.
    assert 0 < sum(r["label"] for r in rows[:20]) < 20
    assert {(r["prompt"], r["completion"], r["label"]) for r in rows} == {
        (p["prompt"], p[side], side == "chosen") for p in PAIRS for side in ("chosen", "rejected")
    }
    assert rows == list(unpaired_rows(data(PAIRED), seed=0))  # the experiment's seed fixes it
    assert rows != list(unpaired_rows(data(PAIRED), seed=1))


def test_kto_rows_from_unpaired_data_keep_every_row():
    rows = list(unpaired_rows(data(UNPAIRED), seed=0))
    assert sorted(rows, key=json.dumps) == sorted(UNPAIRED_ROWS, key=json.dumps)


def test_sft_trains_on_the_preferred_completions_only():
    assert list(chosen_rows(data(PAIRED)))[:2] == [
        {"prompt": "p0", "completion": " good 0"},
        {"prompt": "p1", "completion": " good 1"},
    ]
    assert list(chosen_rows(data(UNPAIRED))) == [
        {"prompt": "p0", "completion": " good"},
        {"prompt": "p1", "completion": " fine"},
    ]


@pytest.mark.parametrize(
    ("chosen", "rejected", "prompt", "completion"),
    [
        (
            CHAT + [{"role": "assistant", "content": "Hello."}],
            CHAT + [{"role": "assistant", "content": "Go away."}],
            CHAT,
            [{"role": "assistant", "content": "Hello."}],
        ),
        ("Human: hi Assistant: hello", "Human: hi Assistant: no", "Human: hi Assistant:", " hello"),
    ],
)
def test_implicit_prompts_are_split_off_the_pairs(chosen, rejected, prompt, completion):
    """Anthropic-HH style rows: chosen and rejected both begin with the dialogue so far."""
    implicit = PreferenceData(
        source="hh",
        format=PAIRED,
        eval_pairs=[],
        eval_prompts=[],
        train=[{"chosen": chosen, "rejected": rejected}],
    )
    assert list(chosen_rows(implicit)) == [{"prompt": prompt, "completion": completion}]
    assert list(prompt_rows(implicit)) == [{"prompt": prompt}]
    assert [r["prompt"] for r in unpaired_rows(implicit, seed=0)] == [prompt, prompt]


def test_on_policy_methods_sample_each_prompt_once():
    assert list(prompt_rows(data(UNPAIRED))) == [{"prompt": "p0"}, {"prompt": "p1"}]


@pytest.mark.slow  # builds the sentiment world
def test_sampled_completions_are_scored_as_they_continue_the_prompt():
    tokenizer = get_world_tokenizer()
    prompt_ids = tokenizer("the movie was", add_special_tokens=False)["input_ids"]
    full = tokenizer("the movie was really great .", add_special_tokens=False)["input_ids"]
    ids = full[len(prompt_ids) :] + [tokenizer.eos_token_id]
    decoded = tokenizer.decode(ids, skip_special_tokens=True)  # what TRL passes: "really great ."
    assert continuations(tokenizer, ["the movie was"], [decoded], [ids]) == [" really great ."]
    chat = [[{"role": "user", "content": "hi"}]]
    assert continuations(tokenizer, chat, ["as is"], [ids]) == ["as is"]


def get_world_tokenizer():
    from harness.data.models import load_tokenizer

    return load_tokenizer(get_world("sentiment").reference_path)


# ---- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [PAIRED, UNPAIRED, PROMPT_ONLY])
@pytest.mark.parametrize("name", METHODS.names())
def test_each_method_takes_exactly_its_formats(name, fmt):
    method = METHODS.get(name)
    given = data(fmt, gold=lambda prompts, completions: [0.0] * len(prompts))
    if fmt in method.formats:
        check_method_accepts(method, given)
        return
    with pytest.raises(DataError) as err:
        check_method_accepts(method, given)
    message = str(err.value)
    assert f"{name!r} trains on" in message and f"has {fmt} rows" in message
    assert all(f in message for f in method.formats)
    assert "To convert:" in message


def test_unpaired_data_for_dpo_says_how_to_convert():
    with pytest.raises(DataError) as err:
        check_method_accepts(METHODS.get("dpo"), data(UNPAIRED))
    message = str(err.value)
    assert "paired (prompt, chosen, rejected)" in message
    assert "Methods that take unpaired rows: kto, sft" in message
    assert "pair a desirable (label true) with an undesirable" in message


def test_gold_reward_methods_refuse_data_without_one():
    with pytest.raises(DataError, match="gold reward.*only the built-in worlds"):
        check_method_accepts(METHODS.get("rloo_gold"), data(PAIRED, gold=None))


@pytest.mark.slow  # builds the sentiment world
def test_unusable_data_fails_before_any_run_starts(tmp_path, module_tracking):
    reference = str(get_world("sentiment").reference_path)
    client = MlflowClient(module_tracking)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs_before = len(client.search_runs(experiments))
    cases = [
        (UNPAIRED_ROWS, "dpo", "trains on paired"),
        ([{"prompt": f"p{i}"} for i in range(10)], "dpo", "has prompt_only rows"),
        (PAIRS, "rloo_gold", "gold reward"),
    ]
    for i, (rows, method, match) in enumerate(cases):
        path = tmp_path / f"rows{i}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        exp = Experiment(
            method=method, beta=0.1, dataset=str(path), model=ModelSpec(name_or_path=reference)
        )
        with pytest.raises(DataError, match=match):
            run_experiment(exp, log=lambda _: None)
    assert len(client.search_runs(experiments)) == runs_before


@pytest.mark.parametrize(
    ("method", "key", "named"),
    [
        ("kto", "desirable", "desirable_weight, undesirable_weight"),
        ("simpo", "gama", "Did you mean 'gamma'"),
        ("rloo", "k", "num_generations, max_completion_length"),
        ("dpo", "label_smoothing", "its settings: none"),
    ],
)
def test_unknown_method_setting_names_the_methods_settings(method, key, named):
    with pytest.raises(
        SpecError, match=f"method_args.{key}: method '{method}' has no setting"
    ) as e:
        check_experiment(
            Experiment(method=method, beta=0.1, dataset="sentiment", method_args={key: 1})
        )
    assert named in str(e.value)


@pytest.mark.parametrize(("batch_size", "k"), [(6, 4), (4, 1)])
def test_rloo_groups_must_fit_the_batch(batch_size, k):
    with pytest.raises(
        SpecError, match=r"num_generations must be >= 2 and divide train.batch_size"
    ):
        check_experiment(
            Experiment(
                method="rloo_gold",
                beta=0.1,
                dataset="sentiment",
                train=TrainSpec(batch_size=batch_size),
                method_args={"num_generations": k},
            )
        )
    exp = Experiment(method="rloo", beta=0.1, dataset="sentiment")  # 16 = 4 groups of 4
    with pytest.raises(SpecError, match="divide"):
        check_experiment(exp.replace({"train.batch_size": "6"}))


def test_method_settings_are_params_with_their_defaults():
    exp = Experiment(
        method="kto", beta=0.1, dataset="sentiment", method_args={"undesirable_weight": 1.33}
    )
    params = flat_params(exp)
    assert params["method_args.desirable_weight"] == 1.0
    assert params["method_args.undesirable_weight"] == 1.33


# ---- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "key", "name"),
    [
        ("kto", "kl", "train/kto/kl"),
        ("orpo", "log_odds_ratio", "train/orpo/log_odds_ratio"),
        ("rloo", "reward", "train/online/reward"),
        ("grpo", "reward", "train/online/reward"),
        ("online_dpo", "objective/scores", "train/online/reward"),
        ("rloo", "completions/mean_length", "train/online/length"),
        ("grpo", "frac_reward_zero_std", "train/online/tie_share"),
        ("online_dpo", "frac_reward_zero_std", "train/online/tie_share"),
        ("rloo", "kl", "train/rloo/kl"),
        ("rloo", "rewards/reward_model/mean", "train/rloo/rewards/reward_model/mean"),
        ("dpo", "rewards/margins", "train/rewards/margins"),
        ("kto", "logps/chosen", "train/logps/chosen"),
        ("sft", "loss", "train/loss"),
    ],
)
def test_trainer_log_keys_map_to_one_scheme(method, key, name):
    assert train_metric_name(method, key) == name


# ---- the registry --------------------------------------------------------------------------


def test_harness_methods_lists_every_method(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name, method in METHODS.items():
        assert f"\n{name} " in out and method.trainer in out
    assert "method_args.gamma_beta_ratio=0.5" in out and "unused in training" in out


@pytest.mark.slow
def test_a_new_method_needs_only_a_registry_entry(monkeypatch, module_tracking, capsys):
    """A throwaway entry (DPOTrainer's NCA loss) validates, is listed, trains and is evaluated."""
    monkeypatch.setattr(METHODS, "_items", dict(METHODS.items()))
    METHODS.register(
        "nca",
        Method(
            name="nca",
            trainer="trl.DPOTrainer (loss nca_pair)",
            beta_means="NCA beta",
            formats=(PAIRED,),
            uses_reference=True,
            paper="Chen et al. 2024 (arXiv:2402.05369)",
            build=dpo_trainer("nca_pair"),
        ),
    )
    main(["methods"])
    assert "trl.DPOTrainer (loss nca_pair)" in capsys.readouterr().out
    exp = Experiment(
        method="nca",
        beta=0.1,
        dataset="sentiment",
        data=DataSpec(max_pairs=16),
        train=TrainSpec(steps=2, batch_size=4, eval_every=0, save_policy=False),
        eval=EvalSpec(n_prompts=4, n_pairs=4, max_new_tokens=4),
    )
    result = run_experiment(exp, log=lambda _: None)
    mlflow.flush_async_logging()
    run = MlflowClient(module_tracking).get_run(result.run_id)
    assert run.data.tags["method"] == "nca" and "eval/gold/reward" in run.data.metrics


@pytest.mark.slow
def test_kto_trains_on_native_unpaired_data(tmp_path, module_tracking):
    world = get_world("sentiment")
    rows = [
        {"prompt": r["prompt"], "completion": c, "label": g > 0}
        for r in world.scored_samples("train")[:16]
        for c, g in zip(r["completions"], r["rewards"], strict=True)
        if g != 0
    ]
    path = tmp_path / "unpaired.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    exp = Experiment(
        method="kto",
        beta=0.1,
        dataset=str(path),
        model=ModelSpec(name_or_path=str(world.reference_path)),
        train=TrainSpec(steps=2, batch_size=4, eval_every=0, save_policy=False),
        eval=EvalSpec(n_prompts=4, max_new_tokens=4),
    )
    result = run_experiment(exp, log=lambda _: None)
    metrics = MlflowClient(module_tracking).get_run(result.run_id).data.metrics
    assert {"train/kto/kl", "eval/kl", "eval/length"} <= set(metrics)
