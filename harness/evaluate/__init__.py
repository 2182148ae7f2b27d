"""Scoring: the harness's own eval metrics, the same for every method."""

from harness.evaluate.core import Evaluator

__all__ = ["Evaluator"]
