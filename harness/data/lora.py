"""LoRA through PEFT: an experiment's `model.lora` as PEFT's LoraConfig, and a LoRA run's reference.

A LoRA run keeps one copy of the weights. TRL wraps the policy with the adapter (its
`peft_config`) and, for the methods with a reference (DPO family, KTO, RLOO), computes reference
log-probs with the adapter switched off. The harness's yardstick uses that same reference,
`AdapterDisabled`, so `eval/kl` is exactly 0 before the first step. PEFT injects the adapter
layers into the model object it is given, so the harness's handle on the policy stays valid.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from peft import LoraConfig, PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from transformers.pytorch_utils import Conv1D

from harness.config.spec import ALL_LINEAR, LoraSpec, SpecError

ADAPTER_CONFIG = "adapter_config.json"  # what PeftModel.save_pretrained writes beside the weights


def lora_config(spec: LoraSpec) -> LoraConfig:
    targets = ALL_LINEAR if spec.target_modules == (ALL_LINEAR,) else list(spec.target_modules)
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def linear_layer_names(model) -> list[str]:
    """The short names of the model's linear layers (GPT-2's Conv1D included), output head aside."""
    head = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, Conv1D)) and module is not head
        }
    )


def check_lora_targets(model, spec: LoraSpec) -> None:
    """Every target must name a layer of the model: PEFT itself skips a misspelt name in a list
    as long as another one matches."""
    if spec.target_modules == (ALL_LINEAR,):
        return
    names = [name for name, _ in model.named_modules()]
    missing = [
        t for t in spec.target_modules if not any(n == t or n.endswith("." + t) for n in names)
    ]
    if missing:
        raise SpecError(
            f"model.lora.target_modules: {', '.join(map(repr, missing))} matches no layer of "
            f"{type(model).__name__}; its linear layers are {', '.join(linear_layer_names(model))} "
            f"(or use {ALL_LINEAR!r})"
        )


@contextmanager
def adapters_off(model):
    """`model` (a PeftModel, or the base model PEFT injected layers into) with every adapter
    switched off and in eval mode; both restored on exit."""
    layers = [
        m for m in model.modules() if isinstance(m, BaseTunerLayer) and not m.disable_adapters
    ]
    trainable = {p: p.requires_grad for m in layers for p in m.parameters()}
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield model
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for param, flag in trainable.items():  # enable_adapters(True) marks adapters trainable
            param.requires_grad_(flag)
        model.train(was_training)


class AdapterDisabled:
    """The reference of a LoRA run: the policy's own weights, seen with the adapter switched off.

    Calls and `generate` run under `adapters_off`; every other attribute is the model's. Before
    TRL attaches the adapter (the step-0 evaluation) this is simply the model.
    """

    def __init__(self, model):
        self.model = model

    def __call__(self, *args, **kwargs):
        with adapters_off(self.model):
            return self.model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        with adapters_off(self.model):
            return self.model.generate(*args, **kwargs)

    def eval(self):  # the policy's mode belongs to its trainer; calls run in eval mode anyway
        return self

    def train(self, mode: bool = True):
        return self

    def __getattr__(self, name):
        return getattr(self.model, name)


def is_peft(model) -> bool:
    """Whether `model` carries a LoRA adapter (what TRL returns when given a peft_config)."""
    return isinstance(model, PeftModel)


def is_adapter(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).exists()


def load_adapter(base, folder: str | Path):
    """The base model with the adapter saved in `folder` on top (PEFT), for inference."""
    return PeftModel.from_pretrained(base, str(folder))
