"""dpo-harness: preference-optimization experiments as Python objects, tracked in MLflow."""

from harness.spec import DataSpec, EvalSpec, Experiment, ModelSpec, SpecError, TrainSpec
from harness.sweep.space import (
    Choice,
    Grid,
    IntUniform,
    LogUniform,
    Sweep,
    SweepError,
    Uniform,
    When,
)

__all__ = [
    "Choice",
    "DataSpec",
    "EvalSpec",
    "Experiment",
    "Grid",
    "IntUniform",
    "LogUniform",
    "ModelSpec",
    "SpecError",
    "Sweep",
    "SweepError",
    "TrainSpec",
    "Uniform",
    "When",
]
