"""Optuna studies over experiments: the study and its workers (study), one trial (trial).

The `Sweep` objects themselves are plain data in `harness.config.space`.
"""
