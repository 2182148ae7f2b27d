"""Datasets: every malformed-input error names file, row and column; accepted formats load."""

import json
from collections import Counter

import pytest

from harness import DataSpec, Experiment
from harness.data.preference import (
    PAIRED,
    PROMPT_ONLY,
    UNPAIRED,
    DataError,
    check_dataset_name,
    load_preference_data,
)
from harness.data.worlds.base import label_pairs

PAIRS = [{"prompt": f"q{i} ", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(20)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def load(path, **data):
    return load_preference_data(
        Experiment(method="dpo", beta=0.1, dataset=str(path), data=DataSpec(**data))
    )


def test_jsonl_loads_with_a_fixed_held_out_split(tmp_path):
    data = load(write_jsonl(tmp_path / "pairs.jsonl", PAIRS))
    assert data.format == PAIRED
    assert len(data.train) == 18 and len(data.eval_pairs) == 2  # eval_fraction 0.1 of 20 prompts
    assert set(data.eval_prompts) == {r["prompt"] for r in data.eval_pairs}
    assert load(tmp_path / "pairs.jsonl").eval_pairs == data.eval_pairs, (
        "split must not depend on anything random"
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_other_file_formats_load(tmp_path, suffix):
    import pandas as pd

    path = tmp_path / f"pairs{suffix}"
    frame = pd.DataFrame(PAIRS)
    {
        ".csv": lambda: frame.to_csv(path, index=False),
        ".parquet": lambda: frame.to_parquet(path),
        ".json": lambda: frame.to_json(path, orient="records", lines=True),
    }[suffix]()
    data = load(path)
    assert data.format == PAIRED and len(data.train) + len(data.eval_pairs) == 20


def test_saved_dataset_folder_loads_through_the_hub_code_path(tmp_path):
    from datasets import Dataset

    Dataset.from_list(PAIRS).save_to_disk(tmp_path / "ds")
    assert len(load(tmp_path / "ds").train) == 18


def test_conversational_and_unpaired_formats_are_recognised(tmp_path):
    chat = [
        {
            "prompt": [{"role": "user", "content": f"hi {i}"}],
            "chosen": [{"role": "assistant", "content": "hello"}],
            "rejected": [{"role": "assistant", "content": "go away"}],
        }
        for i in range(10)
    ]
    assert load(write_jsonl(tmp_path / "chat.jsonl", chat)).format == PAIRED
    unpaired = [{"prompt": f"q{i}", "completion": "a", "label": i % 2 == 0} for i in range(10)]
    assert load(write_jsonl(tmp_path / "kto.jsonl", unpaired)).format == UNPAIRED
    prompts = [{"prompt": f"q{i}"} for i in range(10)]
    assert load(write_jsonl(tmp_path / "prompts.jsonl", prompts)).format == PROMPT_ONLY


@pytest.mark.parametrize(
    "rows, message",
    [
        ([PAIRS[0], {"prompt": "q", "chosen": "a"}], r"row 1: missing column 'rejected'"),
        (
            [PAIRS[0], {"prompt": "q", "chosen": 3, "rejected": "b"}],
            r"row 1, column 'chosen': expected a non-empty string",
        ),
        (
            [{"prompt": " ", "chosen": "a", "rejected": "b"}],
            r"row 0, column 'prompt': empty string",
        ),
        (
            [PAIRS[0], {"prompt": "q", "chosen": "same", "rejected": "same"}],
            r"row 1: 'chosen' is identical to 'rejected'",
        ),
        (
            [{"prompt": "q", "completion": "a", "label": "yes"}],
            r"row 0, column 'label': expected true or false",
        ),
    ],
)
def test_bad_rows_name_file_row_and_column(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=rf"{path}: {message}"):
        load(path)


def test_unparseable_files_name_the_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=rf"{path}: line 2 is not valid JSON"):
        load(path)
    bad_parquet = tmp_path / "broken.parquet"
    bad_parquet.write_text("not parquet")
    with pytest.raises(DataError, match=rf"{bad_parquet}: could not be parsed as .parquet"):
        load(bad_parquet)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match=rf"{empty}: no rows"):
        load(empty)


def test_dataset_names():
    check_dataset_name("sentiment")
    check_dataset_name("Anthropic/hh-rlhf")  # a hub id: loaded only when a run asks for it
    with pytest.raises(ValueError, match="does not exist"):
        check_dataset_name("nowhere/pairs.jsonl")
    with pytest.raises(ValueError, match="Did you mean 'sentiment'"):
        check_dataset_name("sentimen")


def test_label_pairs_filters_and_counts_what_it_drops():
    rows = [
        {
            "prompt": "p",
            "completions": ["a", "b", "c", "c", "d", "e"],
            "rewards": [0.9, -0.5, 0.1, 0.1, 0.2, 0.2],
        },
    ]
    pairs, filtered = label_pairs(rows, DataSpec(labels="deterministic"), seed=0)
    assert pairs == [{"prompt": "p", "chosen": "a", "rejected": "b"}]
    assert filtered == Counter(identical_completions=1, tied_reward=1)


def test_bradley_terry_labels_follow_the_reward_gap():
    # P(a > b) = sigmoid((0.2 - 0) / 0.1) = 0.881: over many draws the chosen share is close to it.
    rows = [{"prompt": "p", "completions": ["a", "b"] * 2000, "rewards": [0.2, 0.0] * 2000}]
    pairs, _ = label_pairs(rows, DataSpec(bt_temperature=0.1), seed=0)
    share = sum(p["chosen"] == "a" for p in pairs) / len(pairs)
    assert abs(share - 0.8808) < 0.02  # 4 standard errors of a 2000-draw share


def test_max_pairs_caps_training_pairs_and_counts_the_rest(tmp_path):
    data = load(write_jsonl(tmp_path / "pairs.jsonl", PAIRS), max_pairs=5)
    assert len(data.train) == 5 and data.filtered["over_max_pairs"] == 13


def test_the_tiny_models_fused_gelu_is_gpt2s_tanh_gelu():
    """Built-in worlds' models use torch's fused tanh GELU for speed: the same function as
    GPT-2's own "gelu_new", 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), to rounding."""
    import math

    import torch
    from transformers import GPT2LMHeadModel

    from harness.data.models import build_tiny_gpt2
    from tests.tiny import word_tokenizer

    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    by_hand = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(torch.nn.functional.gelu(x, approximate="tanh"), by_hand)

    fused = build_tiny_gpt2(word_tokenizer(), seed=3).eval()  # eval: no dropout
    assert fused.config.activation_function == "gelu_pytorch_tanh"
    config = fused.config.to_dict() | {"activation_function": "gelu_new"}
    written_out = GPT2LMHeadModel(type(fused.config).from_dict(config))
    written_out.load_state_dict(fused.state_dict())
    written_out.eval()
    ids = torch.randint(
        0, fused.config.vocab_size, (4, 20), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        torch.testing.assert_close(fused(ids).logits, written_out(ids).logits, atol=1e-5, rtol=1e-5)
