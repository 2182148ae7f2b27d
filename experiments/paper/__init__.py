"""The paper report's studies (`make paper`, `python -m experiments.paper`).

`studies` defines what is trained (each study an MLflow experiment named in
analysis/paper/__init__.py); `runner` trains every seed of every study that is not already
finished in the store, runs the sweep, and writes results/paper/ with analysis.paper.report.
"""
