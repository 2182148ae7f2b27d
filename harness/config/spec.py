"""Experiments as immutable, keyword-only, nested dataclasses, validated at construction.

An `Experiment` pairs a method, a beta and a dataset with model, data, training and evaluation
settings. Every nested field has a dotted name (`train.lr`, `method_args.gamma`): the same name
is used by `--set`, by `Experiment.replace`, by sweeps, and as the MLflow param.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.config.errors import UserError
from harness.config.registry import did_you_mean

DEFAULT_MAX_NEW_TOKENS = 24  # eval.max_new_tokens where the dataset does not fix it


class SpecError(UserError, ValueError):
    """An experiment field holds a value it cannot take; the message names the dotted field."""


DTYPES = ("auto", "float32", "bfloat16", "float16")
ALL_LINEAR = "all-linear"


def documented(default: Any = dataclasses.MISSING, doc: str = "", *, factory=dataclasses.MISSING):
    """A dataclass field that carries its meaning (`harness fields` prints it): the schema holds
    the documentation beside the default it explains. No default and no factory: required."""
    if not doc:
        raise TypeError("documented() needs the field's meaning as doc")
    return field(default=default, default_factory=factory, metadata={"doc": doc})


def field_doc(f: dataclasses.Field) -> str:
    """The meaning `documented` gave a field ("" for a field declared without one)."""
    return f.metadata.get("doc", "")


@dataclass(frozen=True, kw_only=True)
class LoraSpec:
    """A LoRA adapter (Hu et al. 2021) trained in place of the full weights, through PEFT.

    The update of each target layer is (alpha / r) * B A with rank r; the reference of a LoRA
    run is the same base model with the adapter switched off (no second copy of the weights).
    """

    r: int = documented(16, "the adapter's rank")
    alpha: float = documented(32, "scale alpha / r = 2, the PEFT and TRL examples' usual ratio")
    dropout: float = documented(
        0.0, "TRL's DPO, KTO and RLOO zero every dropout anyway (disable_dropout)"
    )
    target_modules: tuple[str, ...] = documented(
        (ALL_LINEAR,),
        'Layer names as PEFT matches them ("q_proj" matches "...self_attn.q_proj"); '
        '"all-linear" is every linear layer but the output head.',
    )

    def __post_init__(self):
        targets = self.target_modules
        if isinstance(targets, (list, str)):  # JSON gives lists; a bare name is a list of one
            object.__setattr__(
                self, "target_modules", (targets,) if isinstance(targets, str) else tuple(targets)
            )
        # Checked here, not only in `validate`: a LoraSpec is often built on its own.
        hints = typing.get_type_hints(LoraSpec)
        for f in dataclasses.fields(self):
            _check_type(f"model.lora.{f.name}", getattr(self, f.name), hints[f.name])
        if self.r <= 0:
            raise SpecError(f"model.lora.r must be > 0, got {self.r}")
        if self.alpha <= 0:
            raise SpecError(f"model.lora.alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise SpecError(f"model.lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules or not all(self.target_modules):
            raise SpecError(
                f"model.lora.target_modules must name at least one layer (or {ALL_LINEAR!r}), "
                f"got {self.target_modules!r}"
            )


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    name_or_path: str = documented(
        "world",
        '"world": the dataset\'s own tiny SFT model (built-in worlds); otherwise a hub id or a '
        "local path.",
    )
    trust_remote_code: bool = documented(
        False, "Off unless asked for: remote code from a hub repository runs arbitrary Python."
    )
    dtype: str = documented(
        "auto",
        'Weights and compute: "auto" = bfloat16 on a GPU that supports it, else float32 (CPU).',
    )
    gradient_checkpointing: bool = documented(
        False,
        "Recompute activations in the backward pass: less memory for long sequences, ~30% slower.",
    )
    lora: LoraSpec | None = documented(None, "None = full fine-tune")

    def __post_init__(self):
        if isinstance(self.lora, Mapping):  # from experiment.json or `replace`
            object.__setattr__(self, "lora", LoraSpec(**self.lora))


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    labels: str = documented(
        "bradley_terry",
        'How a built-in world labels its sampled pairs: "bradley_terry" draws the label with '
        'P(a > b) = sigmoid((r_a - r_b) / bt_temperature); "deterministic" prefers the higher '
        "reward.",
    )
    bt_temperature: float = documented(
        0.1,
        "Noise of the Bradley-Terry draw, in units of the gold reward (VADER compound is in "
        "[-1, 1]).",
    )
    max_pairs: int | None = documented(
        None,
        "Cap on training pairs (None = all); few pairs are how the IPO paper shows DPO "
        "overfitting.",
    )
    eval_fraction: float = documented(
        0.1, "Share of rows held out for evaluation when a file or hub dataset has no eval split."
    )


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    lr: float = documented(
        2e-4,
        "Learning rate. Measured on the sentiment world: 100-150 DPO steps move gold reward, "
        "KL < 5.",
    )
    steps: int = documented(100, "optimizer steps")
    batch_size: int = documented(16, "training rows per step (per device)")
    max_length: int = documented(
        64, "prompt + completion tokens; the sentiment world's pairs fit in 40"
    )
    seed: int = documented(0, "training seed: initialisation, data order and evaluation samples")
    eval_every: int = documented(
        25, "Harness evaluation (KL, gold reward, held-out rewards) every N steps and at the end."
    )
    log_every: int = documented(
        5, "training metrics every N steps: logging each step costs more than a step"
    )
    warmup_steps: int = documented(0, "steps of linear learning-rate warm-up")
    lr_scheduler: str = documented(
        "linear",
        "Learning-rate schedule (linear, constant, cosine, constant_with_warmup); linear is "
        'transformers\' default; "constant" keeps pushing, as long-training overfitting studies '
        "need.",
    )
    grad_accum: int = documented(1, "batches accumulated into one optimizer step")
    reference_cache: bool = documented(
        True,
        "DPO-family: reference log-probs computed once and cached on disk "
        "(harness/methods/refcache.py)",
    )
    save_policy: bool = documented(
        True, "the trained policy as an MLflow model (Models tab, `harness eval`)"
    )


@dataclass(frozen=True, kw_only=True)
class EvalSpec:
    n_prompts: int = documented(
        64, "held-out prompts sampled at temperature 1 for KL and gold reward"
    )
    n_pairs: int = documented(128, "held-out preference pairs for implicit rewards and accuracies")
    max_new_tokens: int | None = documented(
        None,
        "Tokens sampled per completion (eval/, win rates); None: the dataset's own where only "
        "one value is valid (the exact world's 5), else 24 (DEFAULT_MAX_NEW_TOKENS).",
    )
    n_table_rows: int = documented(16, "sample completions kept in the run's artifact table")
    # Scoring after training (harness.evaluate.scoring; `harness eval` does the same later).
    winrate: bool = documented(
        False, "win rates of the policy against the reference and chosen responses"
    )
    temperatures: tuple[float, ...] = documented(
        (0.0, 0.25, 0.5, 0.75, 1.0),
        "Sampling temperatures of the win rates (DPO paper fig. 3); 0 = greedy.",
    )
    judges: tuple[str, ...] = documented(
        ("rm", "gold"),
        "Who judges the win rates: the reward model, the gold reward (skipped where there is "
        "none).",
    )
    rm_backbone: str = documented(
        "world", 'the rm judge\'s backbone: "world", "minilm", a hub id or a path'
    )
    tasks: tuple[str, ...] = documented(
        (), 'lm-eval tasks; "world" = the tasks shipped for the world'
    )
    include_path: str | None = documented(
        None, "a folder of lm-eval task YAMLs searched before lm-eval's own"
    )
    bench_limit: int | None = documented(None, "lm-eval documents per task (None = all)")

    def __post_init__(self):
        for name in ("temperatures", "judges", "tasks"):  # JSON (experiment.json) gives lists
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True, kw_only=True)
class Experiment:
    method: str = documented(
        doc="the preference-optimization method or baseline: see `harness methods`"
    )
    beta: float = documented(
        doc="the method's regularisation strength (what it means per method: `harness methods`)"
    )
    dataset: str = documented(
        doc="a built-in world (sentiment, exact), a .jsonl/.json/.csv/.parquet file or a hub id"
    )
    name: str = documented(
        "", 'defaults to "{method}-b{beta}" (runs of methods that ignore beta drop it)'
    )
    model: ModelSpec = documented(doc="the policy and reference model", factory=ModelSpec)
    data: DataSpec = documented(doc="how preference pairs are made and split", factory=DataSpec)
    train: TrainSpec = documented(doc="the optimisation", factory=TrainSpec)
    eval: EvalSpec = documented(doc="the harness evaluation and scoring", factory=EvalSpec)
    method_args: Mapping[str, Any] = documented(
        doc="Settings only one method has (label_smoothing, gamma, ...); keys checked against "
        "the method.",
        factory=dict,
    )

    def __post_init__(self):
        object.__setattr__(self, "method_args", types.MappingProxyType(dict(self.method_args)))
        validate(self)
        if not self.name:
            object.__setattr__(self, "name", default_name(self))

    def replace(self, changes: Mapping[str, Any] | None = None, **kwargs) -> Experiment:
        """A copy with fields changed by dotted name: `exp.replace({"train.steps": 200})`."""
        return replace(self, {**(changes or {}), **kwargs})

    def flat_params(self, method_settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every field by dotted name; `method_settings` (the method's defaults) fill method_args."""
        flat = _flatten(self.to_dict() | {"method_args": {}})
        for key, value in {**(method_settings or {}), **self.method_args}.items():
            flat[f"method_args.{key}"] = value
        return flat

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return out | {"method_args": dict(self.method_args)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Experiment:
        nested = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in data.items():
            if key not in nested:
                raise SpecError(f"unknown experiment field {key!r}." + did_you_mean(key, nested))
            sub = _dataclass_type(nested[key])
            kwargs[key] = sub(**value) if sub else value
        return cls(**kwargs)


def _dataclass_type(f: dataclasses.Field):
    hint = typing.get_type_hints(Experiment)[f.name]
    return hint if dataclasses.is_dataclass(hint) else None


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---- validation ------------------------------------------------------------------------------

_POSITIVE = {
    "beta",
    "train.lr",
    "train.steps",
    "train.batch_size",
    "train.max_length",
    "train.grad_accum",
    "data.bt_temperature",
    "eval.n_prompts",
    "eval.n_pairs",
    "eval.max_new_tokens",
}
_NON_NEGATIVE = {
    "train.seed",
    "train.eval_every",
    "train.log_every",
    "train.warmup_steps",
    "eval.n_table_rows",
}
LABEL_MODES = ("bradley_terry", "deterministic")
JUDGES = ("rm", "gold")
LR_SCHEDULERS = ("linear", "constant", "cosine", "constant_with_warmup")


def validate(exp: Experiment) -> None:
    """Raise SpecError naming the first bad field; called by Experiment at construction.

    Only what the dataclass itself knows is checked here. Names that need a registry (the
    method, its settings, the dataset) are checked by `harness.methods.checks.check_experiment`.
    """
    for path, value in _typed_fields(exp):
        if path in _POSITIVE and value is not None and not value > 0:
            raise SpecError(f"{path} must be > 0, got {value!r}")
        if path in _NON_NEGATIVE and value < 0:
            raise SpecError(f"{path} must be >= 0, got {value!r}")
    for path, value, allowed in (
        ("model.dtype", exp.model.dtype, DTYPES),
        ("data.labels", exp.data.labels, LABEL_MODES),
        ("train.lr_scheduler", exp.train.lr_scheduler, LR_SCHEDULERS),
    ):
        if value not in allowed:
            raise SpecError(
                f"{path} must be one of {allowed}, got {value!r}" + did_you_mean(value, allowed)
            )
    for key, value in exp.method_args.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"method_args.{key} must be a finite number, got {value!r}")
    if exp.data.max_pairs is not None and exp.data.max_pairs < 2:
        raise SpecError(f"data.max_pairs must be None or >= 2, got {exp.data.max_pairs}")
    if not 0 < exp.data.eval_fraction < 1:
        raise SpecError(f"data.eval_fraction must be in (0, 1), got {exp.data.eval_fraction}")
    validate_scoring(exp.eval.temperatures, exp.eval.judges, "eval.")
    if exp.eval.winrate and not (exp.eval.temperatures and exp.eval.judges):
        raise SpecError("eval.winrate needs at least one of eval.temperatures and eval.judges")
    if exp.eval.bench_limit is not None and exp.eval.bench_limit < 1:
        raise SpecError(f"eval.bench_limit must be None or >= 1, got {exp.eval.bench_limit}")


def validate_scoring(temperatures, judges, prefix: str = "") -> None:
    """Temperatures >= 0 and known judges: for experiments and for `harness eval`'s options."""
    if any(t < 0 for t in temperatures):
        raise SpecError(
            f"{prefix}temperatures must all be >= 0 (0 = greedy), got {tuple(temperatures)}"
        )
    for judge in judges:
        if judge not in JUDGES:
            raise SpecError(
                f"{prefix}judges may hold {JUDGES}, got {judge!r}." + did_you_mean(judge, JUDGES)
            )


@dataclass(frozen=True, kw_only=True)
class ScoringRequest:
    """What to score in place of an experiment's eval settings (`harness eval`'s options);
    None keeps the experiment's own setting."""

    winrate: bool | None = None
    temperatures: tuple[float, ...] | None = None
    judges: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None
    include_path: str | None = None


AS_CONFIGURED = ScoringRequest()  # every eval setting the experiment's own


def _nested_dataclass(hint):
    """The dataclass a field holds (`ModelSpec`, or `LoraSpec` for `LoraSpec | None`), else None."""
    options = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return options[0] if len(options) == 1 and dataclasses.is_dataclass(options[0]) else None


def _typed_fields(obj, prefix: str = ""):
    """Yield (dotted path, value) for every leaf field, checking it against its annotation.

    An optional nested dataclass (`model.lora`) that is None is one leaf holding None.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        path, value = prefix + f.name, getattr(obj, f.name)
        hint = hints[f.name]
        nested = _nested_dataclass(hint)
        if nested and not (value is None and nested is not hint):
            if not isinstance(value, nested):
                raise SpecError(f"{path} must be a {nested.__name__}, got {type(value).__name__}")
            yield from _typed_fields(value, path + ".")
        elif nested:
            yield path, value
        elif path != "method_args":
            _check_type(path, value, hint)
            yield path, value


def _check_type(path: str, value: Any, hint) -> None:
    if typing.get_origin(hint) is tuple:  # tuple[X, ...]: a tuple of X
        if not isinstance(value, tuple):
            raise SpecError(f"{path} must be a tuple, got {value!r} ({type(value).__name__})")
        for item in value:
            _check_type(path, item, typing.get_args(hint)[0])
        return
    allowed = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    for t in allowed:
        if t is type(None) and value is None:
            return
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # inf/nan pass every range check, then break training
                raise SpecError(f"{path} must be a finite number, got {value!r}")
            return
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if t in (str, bool) and isinstance(value, t):
            return
    names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
    raise SpecError(f"{path} must be {names}, got {value!r} ({type(value).__name__})")


# ---- dotted names ----------------------------------------------------------------------------


def field_paths(exp: Experiment) -> list[str]:
    """Every dotted name of the dataclass fields, and the method settings `exp` sets.

    `method_args.NAME` is accepted by `replace` for any NAME; whether the method has that
    setting is checked with the registry (`harness.methods.checks`).
    """
    return list(_declared_paths(Experiment)) + [f"method_args.{k}" for k in exp.method_args]


def _declared_paths(cls, prefix: str = ""):
    """Every dotted field name of `cls`; an optional dataclass gives its own name and its fields'
    (`model.lora` and `model.lora.r`), whether or not it is set."""
    for name, hint in typing.get_type_hints(cls).items():
        nested = _nested_dataclass(hint)
        if nested:
            if nested is not hint:
                yield prefix + name
            yield from _declared_paths(nested, f"{prefix}{name}.")
        elif prefix + name != "method_args":
            yield prefix + name


def default_name(exp: Experiment) -> str:
    return f"{exp.method}-b{exp.beta:g}"


def replace(exp: Experiment, changes: Mapping[str, Any]) -> Experiment:
    """Apply {dotted name: value}; string values (from `--set`) are parsed by the field's type.

    A default name follows the new method and beta; a name the user gave stays."""
    data = exp.to_dict()
    if exp.name == default_name(exp):
        data["name"] = ""
    for path, value in changes.items():
        _set_path(exp, data, path, value)
    return Experiment.from_dict(data)


def _set_path(exp: Experiment, data: dict, path: str, value: Any) -> None:
    head, _, rest = path.partition(".")
    if head == "method_args" and rest:
        data["method_args"][rest] = _parse(value, None)
        return
    known = field_paths(exp)
    if path not in known:
        raise SpecError(f"unknown experiment field {path!r}." + did_you_mean(path, known))
    hint, node, cls = None, data, Experiment
    parts = path.split(".")
    for part in parts:
        hint = typing.get_type_hints(cls)[part]
        cls = _nested_dataclass(hint)
        if part != parts[-1]:
            if node[part] is None:  # `--set model.lora.r=8` turns LoRA on, other settings default
                node[part] = dataclasses.asdict(cls())
            node = node[part]
    node[parts[-1]] = _parse(value, hint)


def _parse(value: Any, hint) -> Any:
    """Turn a `--set` string into the field's type; non-strings pass through unchanged."""
    if not isinstance(value, str) or hint is str:
        return value
    if typing.get_origin(hint) is tuple:  # "0,0.5,1" or "(0.0, 0.5)" as MLflow shows params
        items = value.strip().strip("()[]").split(",")
        return tuple(
            _parse(i.strip().strip("'\""), typing.get_args(hint)[0]) for i in items if i.strip()
        )
    text = value.strip()
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            return text  # validation then names the field and the type it wants
    if text.lower() in ("none", "null"):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_override(text: str) -> tuple[str, str]:
    """'train.steps=200' -> ('train.steps', '200')."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"--set expects dotted.name=value, got {text!r}")
    return key.strip(), value
