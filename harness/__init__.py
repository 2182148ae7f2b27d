"""dpo-harness: preference-optimization experiments as Python objects, tracked in MLflow."""

from harness.spec import DataSpec, EvalSpec, Experiment, ModelSpec, SpecError, TrainSpec

__all__ = ["DataSpec", "EvalSpec", "Experiment", "ModelSpec", "SpecError", "TrainSpec"]
