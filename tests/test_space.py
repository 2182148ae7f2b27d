"""Sweep spaces round-trip through a parent run's params: `Sweep.describe()` writes them,
`space_from_params` reads them back, for every kind of distribution."""

import json

import pytest

from harness import Choice, Experiment, Grid, LogUniform, Sweep, SweepError, Uniform, When
from harness.config.space import IntUniform, space_from_params

BASE = Experiment(method="dpo", beta=0.1, dataset="sentiment")


@pytest.mark.parametrize(
    "space, sampler",
    [
        ({"train.lr": Uniform(1e-5, 1e-3)}, "tpe"),
        ({"beta": LogUniform(0.01, 1.0)}, "tpe"),
        ({"train.steps": IntUniform(10, 200)}, "tpe"),
        ({"train.batch_size": IntUniform(2, 64, log=True)}, "tpe"),
        (
            {"method": Choice(["dpo", "ipo"]), "eval.judges": Choice([("rm",), ("rm", "gold")])},
            "tpe",
        ),
        ({"beta": Grid([0.05, 0.1, 0.5]), "train.seed": Grid([0, 1])}, "grid"),
        (
            {
                "method": Choice(["dpo", "cdpo"]),
                "method_args.label_smoothing": When({"method": "cdpo"}, Uniform(0.0, 0.4)),
            },
            "tpe",
        ),
    ],
    ids=["uniform", "log_uniform", "int_uniform", "int_uniform_log", "choice", "grid", "when"],
)
def test_space_from_params_reads_back_what_describe_wrote(space, sampler):
    sweep = Sweep(name="s", base=BASE, space=space, sampler=sampler, n_trials=2)
    params = {**sweep.describe(), "direction": "maximize"}  # a parent run logs others too
    assert all(isinstance(text, str) for text in params.values())  # MLflow params are strings
    read = space_from_params(params)
    assert read == dict(sweep.space)
    assert [type(d) for d in read.values()] == [type(d) for d in sweep.space.values()]


def test_the_json_names_the_kind_and_keeps_int_bounds_and_log():
    sweep = Sweep(name="s", base=BASE, space={"train.steps": IntUniform(10, 200, log=True)})
    assert json.loads(sweep.describe()["space.train.steps"]) == {
        "int_uniform": [10, 200],
        "log": True,
    }


@pytest.mark.parametrize("text", ["LogUniform(low=0.01, high=1.0)", '{"normal": [0, 1]}', "{}"])
def test_text_that_is_not_a_described_distribution_names_its_param(text):
    with pytest.raises(SweepError, match=r"^space\.beta: not a distribution"):
        space_from_params({"space.beta": text})
