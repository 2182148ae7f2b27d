"""The private TRL methods the harness overrides, held to the signatures and uses they had in
the pinned version: when TRL changes them, this fails, naming the installed version and the
harness module to revisit, instead of the override silently never running."""

import inspect

import pytest
import trl
from trl import DPOTrainer
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer


def pinned(owner, method: str, parameters: list[str], called_as: str, ours: str) -> None:
    where = f"trl {trl.__version__}: {owner.__name__}.{method}"
    hook = getattr(owner, method, None)
    assert hook is not None, f"{where} is gone; {ours} overrides it"
    found = list(inspect.signature(hook).parameters)
    assert found == parameters, f"{where} now takes {found}, not {parameters}; see {ours}"
    init = inspect.getsource(owner.__init__)
    assert called_as in init, f"{where} is no longer called as {called_as!r}; see {ours}"


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


def test_mlflow_still_turns_a_dataset_into_its_entity_with_to_mlflow_entity():
    import mlflow
    from mlflow.data.dataset import Dataset
    from mlflow.tracking import fluent

    where = f"mlflow {mlflow.__version__}: Dataset._to_mlflow_entity"
    ours = "harness/infra/stores.py (log_dataset_inputs)"
    hook = getattr(Dataset, "_to_mlflow_entity", None)
    assert hook is not None, f"{where} is gone; {ours} calls it"
    assert list(inspect.signature(hook).parameters) == ["self"], f"{where} changed; see {ours}"
    made_as = "dataset._to_mlflow_entity()"
    assert made_as in inspect.getsource(fluent.log_inputs) + inspect.getsource(
        fluent._create_dataset_input
    ), f"mlflow.log_inputs no longer logs {made_as}; see {ours}"
