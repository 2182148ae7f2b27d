"""The one checks step: what an experiment or sweep names must exist in the registries.

`harness.config.spec` checks what a dataclass knows by itself (types, ranges) at construction. The
names it holds (the method, its settings, the dataset, a world's constraints, a sweep's
objective) are checked here, by every command before any compute (`run`, `sweep`, `eval`) and
by `run_experiment` for library callers. Errors name the dotted field.

`resolve` is where an experiment becomes a run's: checked once, its defaults filled once, its
run name decided once. The recipe, its evaluation and scoring, `harness eval`'s re-scoring,
sweep trials and the paper runner take the `ResolvedExperiment` instead of resolving again.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.metrics import (
    BENCH_PREFIX,
    EVAL_GOLD_REWARD,
    EVAL_PAIR_METRICS,
    EVAL_SAMPLE_METRICS,
    WINRATE_PREFIX,
)
from harness.config.registry import did_you_mean
from harness.config.space import Choice, Sweep, SweepError, When
from harness.config.spec import (
    DEFAULT_MAX_NEW_TOKENS,
    Experiment,
    SpecError,
    default_name,
    field_paths,
    validate,
)
from harness.data.preference import (
    CONVERSIONS,
    REQUIRED,
    TEXT_COLUMNS,
    UNPAIRED,
    DataError,
    PreferenceData,
    check_dataset_name,
)
from harness.data.worlds import WORLDS, get_world
from harness.methods.catalog import METHODS, Method, config_label, resolved_args


@dataclass(frozen=True)
class ResolvedExperiment:
    """An experiment as a run sees it: checked, defaults filled, named."""

    experiment: Experiment  # defaults filled, `name` the MLflow run name
    source: Experiment  # as the user wrote it (the paper runner's resume key hashes it)
    method: Method
    label: str  # `dpo-b0.1`: the method and, where it enters training, beta

    @property
    def name(self) -> str:
        return self.experiment.name


def resolve(exp: Experiment, name_format: str | None = None) -> ResolvedExperiment:
    """Check `exp` (SpecError naming the field), fill its defaults and decide its run name.

    The run name is the experiment's own name, or, where it kept the default `{method}-b{beta}`,
    its label (`sft`, not `sft-b0.1`: beta does not enter sft training). `name_format` (a sweep
    trial's, e.g. `study-t3-{label}-s0`) names it instead, `{label}` filled in."""
    check_experiment(exp)
    label = config_label(exp)
    if name_format is not None:
        name = name_format.replace("{label}", label)
    else:
        name = label if exp.name == default_name(exp) else exp.name
    filled = with_defaults(exp)
    if filled.name != name:
        filled = filled.replace({"name": name})
    return ResolvedExperiment(
        experiment=filled, source=exp, method=METHODS.get(exp.method), label=label
    )


def check_experiment(exp: Experiment) -> None:
    """Raise SpecError naming the field when the experiment names something unknown, or when
    a field no longer passes the construction checks (changed since with object.__setattr__)."""
    validate(exp)
    if exp.method not in METHODS:
        raise SpecError("method: " + METHODS.unknown_message(exp.method))
    try:
        check_dataset_name(exp.dataset)
    except ValueError as err:
        raise SpecError(f"dataset: {err}") from None
    try:
        METHODS.get(exp.method).check(exp)
    except ValueError as err:
        raise SpecError(str(err)) from None
    if exp.dataset in WORLDS:
        get_world(exp.dataset).check(exp)


def check_distinct_names(experiments: list[ResolvedExperiment], source: str) -> None:
    """Two experiments of one target may not make runs of one name (the runs table and every
    comparison tell runs apart by it)."""
    seen: dict[str, int] = {}
    for i, resolved in enumerate(experiments, 1):
        if resolved.name in seen:
            first = experiments[seen[resolved.name] - 1]
            raise SpecError(
                f"{source}: experiments {seen[resolved.name]} and {i} are both named "
                f"{resolved.name!r} ({describe(first.source)}; {describe(resolved.source)}): "
                "give each its own name="
            )
        seen[resolved.name] = i


def describe(exp: Experiment) -> str:
    return f"{exp.method} beta={exp.beta:g} on {exp.dataset}"


def with_defaults(exp: Experiment) -> Experiment:
    """`exp` with its None-means-default fields filled: by the dataset's world where the world
    allows only one value, else by the general default."""
    world = get_world(exp.dataset).defaults() if exp.dataset in WORLDS else {}
    filled = {"eval.max_new_tokens": world.get("eval.max_new_tokens", DEFAULT_MAX_NEW_TOKENS)}
    changes = {k: v for k, v in filled.items() if _value(exp, k) is None}
    return exp.replace(changes) if changes else exp


def _value(exp: Experiment, path: str):
    node = exp
    for part in path.split("."):
        node = getattr(node, part)
    return node


def settable_fields(exp: Experiment) -> list[str]:
    """Every dotted name `--set`, `replace` and sweeps accept, the method's settings included."""
    known = field_paths(exp)
    return known + [
        f"method_args.{k}" for k in resolved_args(exp) if f"method_args.{k}" not in known
    ]


def expected_metrics(exp: Experiment) -> set[str]:
    """The eval/... names every evaluation of `exp` logs."""
    names = set(EVAL_PAIR_METRICS + EVAL_SAMPLE_METRICS)
    if exp.dataset in WORLDS:
        names |= {EVAL_GOLD_REWARD, *get_world(exp.dataset).extra_metrics}
    return names


def check_method_accepts(method: Method, data: PreferenceData) -> None:
    """Fail before training when `method` cannot train on `data`, saying how to convert it."""

    def columns(fmt: str) -> str:
        return ", ".join(dict.fromkeys(("prompt", *REQUIRED[fmt])))

    if data.format not in method.formats:
        takes = " or ".join(f"{f} ({columns(f)})" for f in method.formats)
        others = [name for name, m in METHODS.items() if data.format in m.formats]
        convert = [
            CONVERSIONS[data.format, f] for f in method.formats if (data.format, f) in CONVERSIONS
        ]
        raise DataError(
            f"method {method.name!r} trains on {takes} rows, but {data.source!r} has "
            f"{data.format} rows ({columns(data.format)}). Methods that take {data.format} rows: "
            f"{', '.join(others) or 'none'}."
            + (f" To convert: {'; or '.join(convert)}." if convert else "")
        )
    if method.needs_both_labels and data.format == UNPAIRED:
        check_both_labels(method, data)
    if method.needs_gold and data.gold is None:
        raise DataError(
            f"method {method.name!r} needs a gold reward, which {data.source!r} does not have: "
            f"only the built-in worlds ({', '.join(WORLDS)}) have one."
        )


def check_both_labels(method: Method, data: PreferenceData) -> None:
    """Unpaired rows with one label only: nothing to weigh against (KTO's paper, Eq. 8)."""
    labels = {row["label"] for row in data.train}
    if len(labels) == 1:
        (label,) = labels
        other = "undesirable (false)" if label else "desirable (true)"
        raise DataError(
            f"{data.source}: every training row has label {str(label).lower()}; method "
            f"{method.name!r} weighs desirable against undesirable completions and needs some "
            f"{other} rows"
            + (" (to imitate desirable completions alone: method='sft')" if label else "")
        )


def check_chat_template(exp: Experiment, data: PreferenceData, tokenizer) -> None:
    """Message-list rows become text through the tokenizer's chat template: without one, fail
    before the run is created, naming the file and the model."""
    first = data.train[0] if data.train else {}
    conversational = any(isinstance(first.get(column), list) for column in TEXT_COLUMNS)
    if conversational and tokenizer.chat_template is None:
        raise DataError(
            f"{data.source}: its rows are conversational (message lists), which need a chat "
            f"template, and the tokenizer of model.name_or_path={exp.model.name_or_path!r} has "
            "none: use a chat model, or string rows"
        )


def check_estimable(exp: Experiment, data: PreferenceData) -> None:
    """Fail before training when the held-out data is too small for a standard error (n >= 2):
    eval/kl_stderr and the win rates' confidence intervals would be NaN."""
    prompts = min(exp.eval.n_prompts, len(data.eval_prompts))
    if prompts < 2:
        raise DataError(
            f"{data.source}: {prompts} held-out prompt(s) to evaluate on, too few to estimate "
            "eval/kl's standard error (at least 2 are needed): add rows, raise "
            f"data.eval_fraction ({exp.data.eval_fraction:g}) or eval.n_prompts "
            f"({exp.eval.n_prompts})"
        )


# ---- sweeps ----------------------------------------------------------------------------------


def check_sweep(sweep: Sweep) -> None:
    """Every value of the space must make a valid experiment; the objective must be logged."""
    try:
        check_experiment(sweep.base)
    except SpecError as err:
        raise SweepError(f"base: {err}") from None
    for key, dist in sweep.space.items():
        base = sweep.base
        if isinstance(dist, When):
            base, dist = base.replace(dict(dist.condition)), dist.distribution
        for value in dist.values():
            try:
                check_experiment(base.replace({key: value}))
            except SpecError as err:
                raise SweepError(f"space[{key!r}] value {value!r}: {err}") from None
        if key.startswith("method_args.") and key not in settable_fields(base):
            known = settable_fields(base)
            raise SweepError(f"space: unknown experiment field {key!r}." + did_you_mean(key, known))
    check_objective(sweep)


def check_objective(sweep: Sweep) -> None:
    """The objective must be a metric that every trial's runs log."""
    if sweep.objective.startswith((WINRATE_PREFIX, BENCH_PREFIX)):
        return  # logged by scoring; checked against the experiment's scoring settings there
    methods = sweep.space.get("method")
    bases = (
        [sweep.base.replace({"method": m}) for m in methods.values()]
        if isinstance(methods, Choice)
        else [sweep.base]
    )
    for base in bases:
        names = expected_metrics(base)
        if sweep.objective not in names:
            raise SweepError(
                f"objective {sweep.objective!r} is not logged by {base.method} runs on "
                f"{base.dataset!r}; they log {', '.join(sorted(names))}."
                + did_you_mean(sweep.objective, names)
            )
