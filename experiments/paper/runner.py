"""`make paper`: train what is missing of every study, run the sweep, write results/paper/.

Resuming: every run carries the tag `paper_key`, a hash of its experiment's JSON (every field,
the seed and any `--set` included) and of its built-in world's version. An experiment whose key
already has a FINISHED run in its study's MLflow experiment is skipped; a run left RUNNING by a
killed `make paper` is closed as KILLED and its experiment trained again. The sweep resumes as
`harness sweep` does (its Optuna study keeps completed trials); its study name ends in a hash of
the sweep's definition and its world's version, so a changed size or world starts a fresh study
instead of mixing two. Do not run two at once on one store.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

from analysis.paper import STUDIES, SWEEP
from experiments.paper import studies
from harness.commands.common import add_override_args, add_tracking_args
from harness.config.spec import Experiment, parse_override
from harness.infra.locations import DEFAULT_OPTUNA_STORAGE, mlflow_ui_hint, resolve_tracking_uri

DEFAULT_OUT = Path("results/paper")


def sweep_study_name(sweep) -> str:
    from harness.data.worlds import world_version  # imports torch: only once a sweep is run

    definition = {
        "base": json.loads(sweep.base.to_json()),
        "space": sweep.describe(),
        "seeds": list(sweep.seeds),
        "objective": sweep.objective,
        "n_trials": sweep.n_trials,
        "world_version": world_version(sweep.base.dataset),  # an older world's trials: a new study
    }
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:8]
    return f"{SWEEP}-{digest}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.paper", description=__doc__)
    parser.add_argument(
        "--seeds",
        type=int,
        default=len(studies.SEEDS),
        help="seeds per experiment (default: %(default)s)",
    )
    add_override_args(parser)  # applied to every experiment, e.g. train.steps=4 for a quick check
    parser.add_argument(
        "--study",
        dest="studies",
        action="append",
        choices=STUDIES,
        help="run only these studies (default: all)",
    )
    add_tracking_args(parser)
    parser.add_argument(
        "--storage",
        default=DEFAULT_OPTUNA_STORAGE,
        help="Optuna storage of the sweep (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="report folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    return args


def plan(args) -> tuple[dict[str, list[Experiment]], object | None]:
    """Every study's seeded experiments with the overrides applied, and the sweep (or None)."""
    changes = dict(parse_override(o) for o in args.overrides)
    seeds = tuple(range(args.seeds))
    chosen = args.studies or list(STUDIES)
    runs = {
        name: [studies.seeded(exp, s).replace(changes) for exp in build() for s in seeds]
        for name, build in studies.STUDIES.items()
        if name in chosen
    }
    sweep = None
    if SWEEP in chosen:
        sweep = studies.sweep(seeds)
        sweep = dataclasses.replace(sweep, base=sweep.base.replace(changes))
    return runs, sweep


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a log file as they happen
    try:
        args = parse_args(argv)
        runs, sweep = plan(args)
        # Deferred: the checks import TRL and torch (seconds); a bad --set fails before that.
        from harness.methods.checks import check_sweep, resolve

        runs = {study: [resolve(e) for e in group] for study, group in runs.items()}
        if sweep is not None:
            check_sweep(sweep)
        from experiments.paper.training import run_studies

        uri = resolve_tracking_uri(args.tracking_uri)
        trained, skipped = run_studies(
            runs, sweep, sweep and sweep_study_name(sweep), uri, args.storage
        )
        from analysis.paper.report import Invocation, generate

        elapsed = time.perf_counter() - started
        generate(uri, args.out, Invocation(elapsed, trained, skipped))
    except (ValueError, FileNotFoundError) as err:  # SpecError, SweepError, bad claims file
        print(f"paper: error: {err}", file=sys.stderr)
        return 2
    print(
        f"make paper: trained {trained} run(s), skipped {skipped} finished, {elapsed / 60:.1f} min\n"
        f"Read the report: {args.out / 'REPORT.md'} (figures and tables beside it).\n"
        f"Compare the runs (MLflow experiments {', '.join(STUDIES)}):\n  {mlflow_ui_hint(uri)}"
    )
    return 0
