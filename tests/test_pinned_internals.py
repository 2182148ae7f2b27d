"""The private TRL methods the harness overrides, held to the signatures and uses they had in
the pinned version: when TRL changes them, this fails, naming the installed version and the
harness module to revisit, instead of the override silently never running."""

import inspect

import pytest
import trl
from trl import DPOTrainer
from trl.experimental.cpo import CPOTrainer
from trl.experimental.online_dpo import OnlineDPOTrainer
from trl.experimental.orpo import ORPOTrainer


def pinned(
    owner, method: str, parameters: list[str], called_as: str, ours: str, caller: str = "__init__"
) -> None:
    where = f"trl {trl.__version__}: {owner.__name__}.{method}"
    hook = getattr(owner, method, None)
    assert hook is not None, f"{where} is gone; {ours} overrides it"
    found = list(inspect.signature(hook).parameters)
    assert found == parameters, f"{where} now takes {found}, not {parameters}; see {ours}"
    source = inspect.getsource(getattr(owner, caller))
    assert called_as in source, f"{where} is no longer called as {called_as!r}; see {ours}"


def test_dpo_trainer_still_precomputes_reference_logps_through_its_hook():
    pinned(
        DPOTrainer,
        "_precompute_ref_logps",
        ["self", "dataset", "name", "batch_size"],
        "self._precompute_ref_logps(",
        "harness/methods/refcache.py",
    )


@pytest.mark.parametrize("trainer", [ORPOTrainer, CPOTrainer], ids=lambda t: t.__name__)
def test_orpo_and_cpo_still_tokenize_through_tokenize_row(trainer):
    pinned(
        trainer,
        "tokenize_row",
        ["self", "feature", "model"],
        "map(self.tokenize_row",
        "harness/methods/trainers.py (_TokenizedLikeDPO)",
    )


@pytest.mark.parametrize(
    ("method", "parameters", "called_as"),
    [
        ("_generate", ["self", "model", "prompts", "images"], "self._generate(\n"),
        (
            "_calculate_rewards_from_functions",
            ["self", "prompts", "completions", "completion_ids_list", "reward_kwargs"],
            "self._calculate_rewards_from_functions(",
        ),
    ],
)
def test_online_dpo_still_samples_and_rewards_through_its_hooks(method, parameters, called_as):
    pinned(
        OnlineDPOTrainer,
        method,
        parameters,
        called_as,
        "harness/methods/trainers.py (OnlineDPOTrainerWithSampleStats)",
        caller="training_step",
    )
    # the sampling hook tokenizes text prompts through processing_class, where the harness
    # swaps in the tokenizer's own special-token rule
    assert "self.processing_class(" in inspect.getsource(OnlineDPOTrainer._generate)
