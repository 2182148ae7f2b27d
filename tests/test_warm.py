"""A warm sweep worker (reference, tokenizer, reference log-probs and samples kept in memory
across trials) logs exactly the numbers a cold one does, and its memory stays bounded."""

import pytest

from harness.config.spec import EvalSpec, Experiment, TrainSpec
from harness.infra.cache import WarmCache, warm, warm_cache
from harness.run.recipe import run_experiment
from tests.readback import metric_history

TINY = dict(
    dataset="sentiment",
    # reference_cache off: a first run that computes the cached log-probs and a later one that
    # reads them from disk differ in float rounding, which is not what this test is about.
    train=TrainSpec(
        steps=4, batch_size=4, eval_every=2, log_every=1, save_policy=False, reference_cache=False
    ),
    eval=EvalSpec(n_prompts=8, n_pairs=8, max_new_tokens=8),
)


@pytest.mark.slow
def test_warm_trials_log_the_same_numbers_as_cold_ones(module_tracking):
    trials = [
        Experiment(method="dpo", beta=0.1, **TINY),
        Experiment(method="ipo", beta=0.5, **TINY),
    ]
    cold = [metric_history(run_experiment(e, log=lambda _: None).run_id) for e in trials]
    with warm_cache():
        warmed = [metric_history(run_experiment(e, log=lambda _: None).run_id) for e in trials]
        assert {key[0] for key in warm.entries} >= {"reference", "pairs", "samples"}
    assert not warm.entries and not warm.enabled  # dropped when the worker ends
    for a, b in zip(cold, warmed, strict=True):
        assert a.keys() == b.keys()
        for name in a:
            if not name.startswith("train/summary/"):  # run time and throughput
                assert a[name] == b[name], name


def test_warm_cache_drops_the_least_recently_used_beyond_its_budget():
    import numpy as np

    cache = WarmCache(max_bytes=2 * 800)
    cache.enabled = True
    built = []

    def array(name):
        built.append(name)
        return np.zeros(100)  # 800 bytes

    for name in ("a", "b", "a", "c", "a", "b"):
        cache.get((name,), lambda name=name: array(name))
    assert built == ["a", "b", "c", "b"]  # a stayed (recently used), b was dropped for c
    assert list(cache.entries) == [("a",), ("b",)]
    off = WarmCache(max_bytes=2**30)
    off.get(("x",), lambda: array("x"))
    assert not off.entries  # a disabled cache builds every time and keeps nothing


def test_the_worker_budget_is_read_when_the_worker_turns_the_cache_on(monkeypatch):
    monkeypatch.setenv("HARNESS_WARM_GB", "0.5")
    with warm_cache():
        assert warm.max_bytes == 2**29
    monkeypatch.setenv("HARNESS_WARM_GB", "2")  # a later worker in the same process
    with warm_cache():
        assert warm.max_bytes == 2**31
