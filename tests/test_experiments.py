"""The experiment definitions in experiments/: valid, offline, and the studies they promise."""

from __future__ import annotations

import socket
from collections import Counter

import pytest

from harness import Experiment
from harness.infra.loader import load_objects
from harness.methods.catalog import METHODS

DEFINITIONS = [
    "experiments/quickstart.py",
    "experiments/sentiment_frontier.py",
    "experiments/hub_recipes.py",
]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("validating an experiment definition tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("path", DEFINITIONS)
def test_definitions_load_with_unique_names(path, no_network):
    experiments, _ = load_objects(path, Experiment)
    names = Counter(exp.name for exp in experiments)
    assert all(n == 1 for n in names.values()), names
    for exp in experiments:  # every field survives the dotted-name round trip used by sweeps
        assert Experiment.from_dict(exp.to_dict()) == exp


def test_quickstart_compares_the_family_with_the_sft_baseline():
    experiments, _ = load_objects("experiments/quickstart.py", Experiment)
    betas = {
        m: {e.beta for e in experiments if e.method == m} for m in ("dpo", "ipo", "kto", "orpo")
    }
    assert all(len(b) == 2 for b in betas.values()), betas
    assert [e.method for e in experiments].count("sft") == 1  # beta does not change SFT training
    assert all(e.dataset == "sentiment" and e.model.name_or_path == "world" for e in experiments)
    assert len({e.train for e in experiments}) == 1  # one schedule: like with like


def test_frontier_traces_dpo_and_rlhf_paths():
    experiments, _ = load_objects("experiments/sentiment_frontier.py", Experiment)
    by_method = {m: sorted(e.beta for e in experiments if e.method == m) for m in METHODS}
    assert by_method["dpo"] == [0.05, 0.1, 1.0, 5.0]
    assert len(by_method["rloo"]) >= 3 and len(by_method["rloo_gold"]) >= 3
    assert by_method["sft"]
    assert all(0 < e.train.eval_every < e.train.steps for e in experiments)  # a path, not a point


def test_hub_recipes_name_hub_models_and_data_their_methods_take(no_network):
    from experiments.hub_recipes import DATASET_FORMATS

    experiments, _ = load_objects("experiments/hub_recipes.py", Experiment)
    for exp in experiments:
        assert "/" in exp.model.name_or_path and exp.model.name_or_path != "world", exp.name
        assert DATASET_FORMATS[exp.dataset] in METHODS.get(exp.method).formats, exp.name
        assert not exp.model.trust_remote_code
    assert {e.method for e in experiments} >= {"dpo", "ipo", "kto", "orpo", "simpo", "sft"}
