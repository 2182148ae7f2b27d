"""Experiment objects: validation before compute, dotted replace, flat params."""

import dataclasses
import typing

import pytest

from harness import DataSpec, EvalSpec, Experiment, SpecError, TrainSpec
from harness.commands.fields import documented_fields
from harness.config.spec import documented, field_doc, parse_override
from harness.methods.catalog import flat_params, resolved_args
from harness.methods.checks import check_experiment, settable_fields


def make(**kwargs):
    return Experiment(**{"method": "dpo", "beta": 0.1, "dataset": "sentiment", **kwargs})


def test_defaults_and_name():
    exp = make()
    assert exp.name == "dpo-b0.1"
    assert exp.model.name_or_path == "world" and exp.model.trust_remote_code is False
    assert exp.train.steps > 0 and exp.eval.n_prompts > 0


def test_immutable_and_keyword_only():
    exp = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.beta = 0.5
    with pytest.raises(TypeError):
        Experiment("dpo", 0.1, "sentiment")
    with pytest.raises(TypeError):
        exp.method_args["x"] = 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "dpx"}, "method: unknown method 'dpx'.*Did you mean 'dpo'"),
        ({"dataset": "sentimnt"}, "dataset: unknown dataset 'sentimnt'.*Did you mean 'sentiment'"),
        ({"dataset": "missing/file.jsonl"}, "data file 'missing/file.jsonl' does not exist"),
        ({"beta": 0}, r"beta must be > 0, got 0"),
        ({"beta": "0.1"}, r"beta must be float, got '0.1'"),
        ({"train": TrainSpec(lr=-1.0)}, r"train.lr must be > 0"),
        ({"train": TrainSpec(steps=2.5)}, r"train.steps must be int"),
        ({"train": TrainSpec(seed=-1)}, r"train.seed must be >= 0"),
        ({"eval": EvalSpec(n_prompts=0)}, r"eval.n_prompts must be > 0"),
        ({"data": DataSpec(labels="bt")}, r"data.labels must be one of .*bradley_terry"),
        ({"data": DataSpec(max_pairs=1)}, r"data.max_pairs must be None or >= 2"),
        ({"data": DataSpec(eval_fraction=1.5)}, r"data.eval_fraction must be in \(0, 1\)"),
        ({"train": {"steps": 3}}, r"train must be a TrainSpec, got dict"),
        ({"method_args": {"gama": 1}}, r"method_args.gama: method 'dpo' has no setting 'gama'"),
    ],
)
def test_validation_names_the_field(kwargs, message):
    """Refused before any compute: by the dataclass, or by the checks step every command runs."""
    with pytest.raises(SpecError, match=message):
        check_experiment(make(**kwargs))


def test_method_args_defaults_and_known_settings():
    exp = make(method="cdpo")
    assert resolved_args(exp) == {"label_smoothing": 0.1}
    assert resolved_args(make(method="cdpo", method_args={"label_smoothing": 0.3})) == {
        "label_smoothing": 0.3
    }


def test_dotted_replace_parses_by_field_type():
    exp = make()
    changed = exp.replace({"train.steps": "200", "beta": "0.5", "data.max_pairs": "none"})
    assert changed.train.steps == 200 and changed.beta == 0.5 and changed.data.max_pairs is None
    assert exp.train.steps != 200, "replace returns a copy"
    assert make(method="cdpo").replace({"method_args.label_smoothing": "0.2"}).method_args == {
        "label_smoothing": 0.2
    }
    with pytest.raises(SpecError, match=r"unknown experiment field 'train.stepz'.*'train.steps'"):
        exp.replace({"train.stepz": 3})
    with pytest.raises(SpecError, match="train.steps must be > 0"):
        exp.replace({"train.steps": 0})


def test_flat_params_use_dotted_names():
    params = flat_params(make(method="cdpo"))
    assert params["method"] == "cdpo" and params["beta"] == 0.1
    assert params["train.lr"] == TrainSpec().lr and params["eval.n_prompts"] == EvalSpec().n_prompts
    assert params["method_args.label_smoothing"] == 0.1
    # LoRA's settings are settable while model.lora is None (setting one turns LoRA on).
    lora = {f"model.lora.{name}" for name in ("r", "alpha", "dropout", "target_modules")}
    assert set(settable_fields(make(method="cdpo"))) == set(params) | lora


def test_json_round_trip():
    exp = make(method="cdpo", method_args={"label_smoothing": 0.2}, train=TrainSpec(steps=7))
    assert Experiment.from_dict(exp.to_dict()) == exp


def test_parse_override():
    assert parse_override("train.steps=200") == ("train.steps", "200")
    with pytest.raises(SpecError, match="dotted.name=value"):
        parse_override("train.steps")


def test_every_field_carries_its_meaning_in_the_schema():
    def undocumented(cls, prefix=""):
        for name, hint in typing.get_type_hints(cls).items():
            f = next(f for f in dataclasses.fields(cls) if f.name == name)
            if not field_doc(f).strip():
                yield prefix + name
            for sub in (hint, *typing.get_args(hint)):
                if dataclasses.is_dataclass(sub):  # nested specs, and LoraSpec | None
                    yield from undocumented(sub, f"{prefix}{name}.")

    assert list(undocumented(Experiment)) == []
    assert "model.lora.r" in {name for name, _, _ in documented_fields()}
    with pytest.raises(TypeError, match="needs the field's meaning"):
        documented(3)
