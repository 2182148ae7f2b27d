"""Optuna sweeps over experiments: `Sweep` objects, studies, workers."""

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

__all__ = ["Choice", "Grid", "IntUniform", "LogUniform", "Sweep", "SweepError", "Uniform", "When"]
