"""The step-0 evaluation takes the reference's samples, log-probs and (in the exact world) its
enumerated outcome table for the policy's (it has the reference's weights then): the numbers
must be the ones the policy itself gives."""

import copy

import pytest

from harness import EvalSpec, Experiment
from harness.data.models import load_causal_lm, load_tokenizer
from harness.data.preference import load_preference_data
from harness.evaluate.core import Evaluator
from harness.methods.checks import resolve


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["sentiment", "exact"])
def test_step0_shortcut_gives_the_policys_own_numbers(dataset):
    evals = EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8 if dataset == "sentiment" else 5)
    exp = Experiment(method="dpo", beta=0.1, dataset=dataset, eval=evals)
    data = load_preference_data(exp)
    path = data.world.reference_path
    tokenizer = load_tokenizer(path)
    reference = load_causal_lm(path).eval()
    evaluator = Evaluator(resolve(exp), data, tokenizer, reference)
    policy = copy.deepcopy(reference)
    shortcut, shortcut_table = evaluator.evaluate(policy, untrained=True)
    computed, computed_table = evaluator.evaluate(policy)
    assert shortcut.keys() == computed.keys()
    for name, value in computed.items():
        assert shortcut[name] == pytest.approx(value, abs=1e-6), name
    assert shortcut_table == computed_table == evaluator.reference_table()
    assert shortcut["eval/kl"] == 0.0
    if dataset == "exact":
        assert computed["eval/kl_exact"] == pytest.approx(0.0, abs=1e-12)
        assert "eval/frontier_gap" in shortcut
