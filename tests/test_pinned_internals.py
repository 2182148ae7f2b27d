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


def test_orpo_still_returns_its_chosen_nll_fifth_from_concatenated_forward():
    """PaperORPOTrainer replaces the fifth value with the paper's completion-only NLL, which
    get_batch_loss_metrics must still take fifth as the SFT term of the loss."""
    ours = "harness/methods/trainers.py (PaperORPOTrainer)"
    pinned(
        ORPOTrainer,
        "concatenated_forward",
        ["self", "model", "batch"],
        "forward_output = self.concatenated_forward(model, batch)",
        ours,
        caller="get_batch_loss_metrics",
    )
    returned = (
        "return (chosen_logps, rejected_logps, chosen_logits, rejected_logits, chosen_nll_loss"
    )
    assert returned in inspect.getsource(ORPOTrainer.concatenated_forward), ours
    uses = "policy_nll_loss,\n        ) = forward_output[:5]"
    assert uses in inspect.getsource(ORPOTrainer.get_batch_loss_metrics), ours
    assert "loss = policy_nll_loss - losses.mean()" in inspect.getsource(
        ORPOTrainer.get_batch_loss_metrics
    ), ours


def test_submitit_still_has_the_private_hooks_the_slurm_launcher_uses():
    """harness/run/slurm.py reads submitit's parameter lists and submission script (to check
    `--slurm` keys and ask `sbatch --test-only` before submitting): submitit has no public API
    for either."""
    import submitit
    from submitit.auto.auto import AutoExecutor
    from submitit.slurm import slurm

    where = f"submitit {submitit.__version__}"
    for owner, name in [
        (AutoExecutor, "_typed_parameters"),
        (AutoExecutor, "_valid_parameters"),
        (slurm.SlurmExecutor, "_valid_parameters"),
        (slurm.SlurmExecutor, "_make_submission_file_text"),
        (slurm, "_make_sbatch_string"),
    ]:
        assert callable(getattr(owner, name, None)), (
            f"{where}: {name} gone; see harness/run/slurm.py"
        )
    assert "partition" in slurm.SlurmExecutor._valid_parameters(), where
    assert list(inspect.signature(slurm.SlurmExecutor._make_submission_file_text).parameters) == [
        "self",
        "command",
        "uid",
    ], f"{where}: _make_submission_file_text changed; see harness/run/slurm.py check_accepted"


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


def test_lm_eval_still_reports_the_environment_through_add_env_info():
    """harness/evaluate/bench.py replaces lm_eval.evaluator.add_env_info for the length of an
    evaluation (its `pip list`, `nvidia-smi` ... subprocesses cost about a second a call, and
    their report is not kept): when lm-eval stops calling it by that name, the replacement
    would silently do nothing."""
    import lm_eval
    import lm_eval.evaluator

    where = f"lm-eval {lm_eval.__version__}: lm_eval.evaluator.add_env_info"
    ours = "harness/evaluate/bench.py (without_environment_report)"
    hook = getattr(lm_eval.evaluator, "add_env_info", None)
    assert hook is not None, f"{where} is gone; {ours} replaces it"
    assert list(inspect.signature(hook).parameters) == ["storage"], f"{where} changed; see {ours}"
    source = inspect.getsource(lm_eval.evaluator.simple_evaluate)
    assert "add_env_info(results)" in source, f"{where} is no longer called; see {ours}"
