"""Every MLflow run tag the harness writes or reads, defined once (as metric names are in
`harness.config.metrics`), and the provenance set logged on every run."""

from __future__ import annotations

# What a run is.
METHOD = "method"
DATASET = "dataset"
EXPERIMENT = "experiment"
SEED = "seed"
ROLE = "role"  # "trial" or "sweep_parent" in sweeps
ERROR = "error"  # why a run FAILED or was KILLED
FINAL_STEP = "final_step"  # set by `harness run`: the step of the run's last evaluation
POLICY_MODEL = "policy_model"  # the run's policy as an MLflow model URI (models:/m-...)
HEARTBEAT = "harness.heartbeat"
PROCESS = "harness.process"
BEST_OF_N = "best_of_n"  # a best-of-n run's n (no training: the base model sampled n times)
# What a run's eval/kl is where it is not the sampled estimate: best-of-n logs the bound.
EVAL_KL_KIND = "eval_kl"
KL_BOUND = "bound: log n - (n-1)/n (Beirami et al. 2024, arXiv:2401.01879)"
REFERENCE_CACHE = "reference_cache"  # DPO family: "hit" or "miss" of the reference log-probs
SCORING = "scoring"  # what the run's scoring computed (win rate judges, lm-eval tasks)
PARENT_RUN = "mlflow.parentRunId"  # MLflow's own: nests a sweep's trial runs under its parent

# Sweeps.
SWEEP = "sweep"
TRIAL = "trial"
TRIAL_PARAMS = "trial_params"  # the sampled values with their types, as JSON
TRIAL_STATE = "trial_state"
TRIAL_VALUE = "trial_value"
RETRY_OF = "retry_of"
PRUNED = "pruned"
ROLE_TRIAL = "trial"
ROLE_SWEEP_PARENT = "sweep_parent"
OPTUNA_STORAGE = "optuna_storage"  # on the parent run: the study's storage, password masked
BEST_TRIAL = "best_trial"  # on the parent run at the end: the best trial's number, or "none"
BEST_VALUE = "best_value"
BEST_PARAMS = "best_params"

# Provenance: logged on every run, to say what produced it.
GIT_SHA = "git_sha"  # the checkout's commit, or "not a checkout"
DEVICE = "device"
DATA_FINGERPRINT = "data_fingerprint"  # sha256 of the training rows and held-out pairs
WORLD_VERSION = "world_version"  # a built-in world's generator version ("none" for other data)
# The pinned libraries whose versions a run records, as tag "version.<distribution>".
VERSIONED = ("torch", "transformers", "trl", "peft", "accelerate", "mlflow", "optuna", "lm-eval")


def version_tag(distribution: str) -> str:
    return f"version.{distribution}"
