"""LoRA through PEFT: the spec's dotted names, the adapter-disabled reference, a trained adapter."""

import json

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from harness import EvalSpec, Experiment, LoraSpec, ModelSpec, SpecError, TrainSpec
from harness.config.spec import ScoringRequest
from harness.data.lora import AdapterDisabled, check_lora_targets, lora_config
from harness.data.models import build_tiny_gpt2
from harness.infra.stores import use_tracking
from tests.readback import artifact_paths, metric_history


def dpo(**changes) -> Experiment:
    return Experiment(method="dpo", beta=0.1, dataset="sentiment").replace(changes)


def test_set_lora_r_turns_lora_on_with_defaults_and_none_turns_it_off():
    on = dpo(**{"model.lora.r": "8"})
    assert on.model.lora == LoraSpec(r=8)
    assert on.model.lora.target_modules == ("all-linear",)
    assert on.replace({"model.lora": "none"}).model.lora is None
    assert on.replace({"model.lora.target_modules": "q_proj,v_proj"}).model.lora.target_modules == (
        "q_proj",
        "v_proj",
    )


def test_lora_fields_are_dotted_params_and_survive_json():
    exp = dpo(**{"model.lora.r": 4, "model.dtype": "bfloat16"})
    params = exp.flat_params()
    assert params["model.lora.r"] == 4 and params["model.lora.alpha"] == 32
    assert params["model.dtype"] == "bfloat16" and params["model.gradient_checkpointing"] is False
    assert dpo().flat_params()["model.lora"] is None
    assert Experiment.from_dict(json.loads(exp.to_json())) == exp


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model.lora.r": "0"}, "model.lora.r must be > 0"),
        ({"model.lora.dropout": "1"}, r"model.lora.dropout must be in \[0, 1\)"),
        ({"model.lora.dropout": "-0.1"}, r"model.lora.dropout must be in \[0, 1\)"),
        ({"model.lora.alpha": "0"}, "model.lora.alpha must be > 0"),
        ({"model.lora.target_modules": ""}, "model.lora.target_modules must name"),
        ({"model.lora.rank": "8"}, "unknown experiment field 'model.lora.rank'"),
        ({"model.dtype": "bf16"}, "model.dtype must be one of .* Did you mean 'bfloat16'"),
    ],
)
def test_bad_lora_settings_fail_with_the_dotted_name(changes, message):
    with pytest.raises(SpecError, match=message):
        dpo(**changes)


def test_lora_spec_checks_itself_at_construction():
    with pytest.raises(SpecError, match="model.lora.r must be > 0"):
        LoraSpec(r=0)
    with pytest.raises(SpecError, match="model.lora.r must be int"):
        LoraSpec(r=1.5)


def tiny_model():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(20)}}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<pad>")),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    return build_tiny_gpt2(tok, n_embd=16, n_layer=1, n_head=2)


def test_a_lora_target_the_model_lacks_names_its_linear_layers():
    message = "'q_proj' matches no layer of GPT2LMHeadModel; its linear layers are c_attn, c_fc"
    with pytest.raises(SpecError, match=message):
        check_lora_targets(tiny_model(), LoraSpec(target_modules=("c_attn", "q_proj")))
    check_lora_targets(tiny_model(), LoraSpec(target_modules=("c_attn",)))


def test_adapter_disabled_reference_is_the_base_model_sharing_its_weights():
    from peft import get_peft_model

    model = tiny_model().eval()
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        base_logits = model(ids).logits
    reference = AdapterDisabled(model)
    policy = get_peft_model(model, lora_config(LoraSpec(r=2)))
    for name, param in policy.named_parameters():
        if "lora_B" in name:  # B starts at 0 (the adapter adds nothing): move it
            torch.nn.init.normal_(param)
    with torch.no_grad():
        assert not torch.equal(policy(ids).logits, base_logits)
        policy.train()  # the reference runs in eval mode whatever the trainer left
        torch.testing.assert_close(reference(ids).logits, base_logits, rtol=0, atol=0)
    assert policy.training  # the reference's call left the policy's mode alone
    assert [n for n, p in policy.named_parameters() if p.requires_grad] == [
        n for n, _ in policy.named_parameters() if "lora_" in n
    ]


TINY_EVAL = EvalSpec(n_prompts=16, n_pairs=16, max_new_tokens=12, n_table_rows=4)


@pytest.mark.slow
def test_lora_dpo_on_the_sentiment_world_trains_an_adapter_against_the_disabled_base(tracking):
    from harness.run.recipe import run_experiment
    from harness.run.rescore import score_run

    use_tracking(tracking, "lora")
    exp = Experiment(
        name="lora",
        method="dpo",
        beta=0.1,
        dataset="sentiment",
        model=ModelSpec(lora=LoraSpec(r=8, alpha=16)),
        train=TrainSpec(steps=4, batch_size=4, eval_every=2, log_every=1, lr=5e-3),
        eval=TINY_EVAL,
    )
    result = run_experiment(exp, log=lambda _: None)
    history = metric_history(result.run_id)
    for name in ("eval/rewards/margins", "eval/logps/chosen", "eval/kl", "eval/gold/reward"):
        assert [step for step, _ in history[name]] == [0, 2, 4], name
    assert history["eval/kl"][0][1] == 0.0  # the reference is the base with the adapter off
    assert history["eval/rewards/margins"][0][1] == 0.0
    assert history["eval/kl"][-1][1] != 0.0  # the adapter moved the policy
    artifacts = artifact_paths(result.run_id)
    assert {"policy/adapter_config.json", "policy/adapter_model.safetensors"} <= artifacts
    assert "policy/model.safetensors" not in artifacts  # the adapter alone, not the full weights
    params = MlflowClient().get_run(result.run_id).data.params
    assert params["model.lora.r"] == "8" and params["effective_batch"] == "4"

    # `harness eval` puts the adapter back on the base: its samples are the trained policy's.
    request = ScoringRequest(judges=("gold",), temperatures=(1.0,), tasks=())
    scores = score_run(result.run_id, request, log=lambda _: None)
    assert 0.0 <= scores["winrate/gold/vs_reference"] <= 1.0
    mlflow.flush_async_logging()


def test_the_reference_cache_keys_a_lora_policy_on_its_base_weights():
    import copy

    from peft import get_peft_model

    from harness.methods.refcache import model_fingerprint

    model = tiny_model()
    policy = get_peft_model(copy.deepcopy(model), lora_config(LoraSpec(r=2)))
    assert model_fingerprint(policy) == model_fingerprint(model)
    with torch.no_grad():
        next(p for n, p in policy.named_parameters() if "c_attn.base_layer" in n).add_(1.0)
    assert model_fingerprint(policy) != model_fingerprint(model)
