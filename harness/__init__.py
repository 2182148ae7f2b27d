"""dpo-harness: preference-optimization experiments as Python objects, tracked in MLflow."""

from harness.config.space import (
    Choice,
    Grid,
    IntUniform,
    LogUniform,
    Sweep,
    SweepError,
    Uniform,
    When,
)
from harness.config.spec import (
    DataSpec,
    EvalSpec,
    Experiment,
    LoraSpec,
    ModelSpec,
    SpecError,
    TrainSpec,
)

__all__ = [
    "Choice",
    "DataSpec",
    "EvalSpec",
    "Experiment",
    "Grid",
    "IntUniform",
    "LogUniform",
    "LoraSpec",
    "ModelSpec",
    "SpecError",
    "Sweep",
    "SweepError",
    "TrainSpec",
    "Uniform",
    "When",
]
