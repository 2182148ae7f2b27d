"""`train.lr_scheduler`: validated by name and passed to every method's trainer."""

from __future__ import annotations

import pytest

from harness.config.spec import Experiment, SpecError
from harness.run.recipe import trainer_arguments


def test_lr_scheduler_is_checked_and_reaches_the_trainer_arguments():
    exp = Experiment(method="dpo", beta=0.1, dataset="exact")
    assert exp.train.lr_scheduler == "linear"  # transformers' default: unchanged behaviour
    constant = exp.replace({"train.lr_scheduler": "constant"})
    assert trainer_arguments(constant, "unused")["lr_scheduler_type"] == "constant"
    with pytest.raises(SpecError, match="train.lr_scheduler .* Did you mean 'constant'"):
        exp.replace({"train.lr_scheduler": "constnat"})
