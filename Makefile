# `make demo` runs the default study; `make test` runs the test suite. Both create .venv first.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Offline by default and every cache inside the project (results/cache is git-ignored).
export HF_HOME              := $(CURDIR)/results/cache/hf
export HF_HUB_OFFLINE       := 1
export HF_DATASETS_OFFLINE  := 1
export TRL_EXPERIMENTAL_SILENCE := 1
export MPLCONFIGDIR         := $(CURDIR)/results/cache/matplotlib

.PHONY: demo paper test test-fast lint format bench setup screenshots slurm-packages
setup: $(STAMP)

# The project's own modules as .pyc files: the machine sets PYTHONDONTWRITEBYTECODE, so without
# them every process (each CLI run, sweep worker, SLURM job of the tests) compiles them again,
# 0.2-0.3 s each. Only what changed since the last call is recompiled (under a second).
COMPILE := $(PY) -m compileall -q -j 0 harness analysis experiments tests benchmarks

# torch first, pinned, from the wheel folder pip is configured with ($PIP_FIND_LINKS: the CPU
# wheel on this machine's disk): through uv in 10 s against pip's 23 s here; through pip itself
# where no such folder is set (uv does not read pip's configuration, and a looser source or pin
# would pull a multi-GB CUDA build). The rest through uv: the same versions as pip resolves, in
# 29 s against pip's 107 s. --compile-bytecode because the machine sets PYTHONDONTWRITEBYTECODE:
# without .pyc files each import of the stack takes 2x. pip again if uv cannot reach the
# registry (uv has its own network settings and TLS roots).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q uv==0.13.9
	$(if $(PIP_FIND_LINKS),$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode \
		$(foreach f,$(PIP_FIND_LINKS),--find-links $(f)) torch==2.13.0 ||) \
		$(PY) -m pip install -q torch==2.13.0
	$(VENV)/bin/uv pip install -q --python $(PY) --compile-bytecode -e '.[dev]' \
		|| $(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(COMPILE)
	$(VENV)/bin/harness run experiments/quickstart.py
	$(VENV)/bin/harness figures --experiment quickstart --out results/figures

# The MLflow UI on the demo's store, as a researcher sees it, into results/screenshots/ (README).
# Needs Chromium from the system's packages (apt-get install chromium); not part of `make test`.
screenshots: $(STAMP)
	test -f results/mlflow.db || $(MAKE) demo
	$(PY) -m analysis.screenshots --store sqlite:///results/mlflow.db --experiment quickstart \
		--out results/screenshots

# The paper report: every study with 3 seeds, then results/paper/ (figures, tables, REPORT.md).
# Resumable: a rerun skips runs already finished. A quick check of the machinery, in seconds:
#   make paper PAPER_ARGS="--seeds 1 --set train.steps=2 --study paper-deterministic --out /tmp/paper"
paper: $(STAMP)
	$(PY) -m experiments.paper $(PAPER_ARGS)

# The full suite, what CI runs, on three workers with one torch thread each (many tests wait on
# servers and subprocesses: three fill the two cores better than two). A file's tests stay on one
# worker (module fixtures, the SLURM cluster); the layer contract (import-linter) is checked
# first. SLURM's daemons come from the system's packages when missing (needs root), installed
# while .venv is set up: both wait mostly on downloads.
test:
	$(MAKE) --no-print-directory -j2 --output-sync=target $(STAMP) slurm-packages
	$(VENV)/bin/lint-imports
	$(COMPILE)
	$(PY) -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder tests

slurm-packages:
	sh tests/setup/install_slurm.sh

# Day-to-day: everything not marked slow (no world building, no training, no simulation
# studies), on two workers: 47 s here with .venv set up (2026-12-07).
test-fast: $(STAMP)
	$(VENV)/bin/lint-imports
	$(COMPILE)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" tests

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/bench_overhead.py
