"""`make paper` (python -m experiments.paper): resumes a store, checks its arguments first."""

from __future__ import annotations

import re
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from analysis.paper import DETERMINISTIC, SWEEP
from experiments.paper import studies
from experiments.paper.runner import main
from harness.config import tags
from harness.infra import stores

TINY = [
    "--study",
    DETERMINISTIC,
    "--seeds",
    "1",
    "--set",
    "train.steps=2",
    "--set",
    "train.eval_every=2",  # = steps: evaluations at the start and the end,
    "--set",
    "eval.n_prompts=8",
    "--set",
    "eval.n_pairs=8",
]


def counts(text: str) -> tuple[int, int]:
    match = re.search(r"trained (\d+) run\(s\), skipped (\d+) finished", text)
    return int(match[1]), int(match[2])


def test_a_bad_override_fails_before_anything_trains(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["--set", "train.stepz=2", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.stepz" in err[0] and "train.steps" in err[0]
    assert not (tmp_path / "mlflow.db").exists()


def test_every_study_runs_each_experiment_with_three_seeds_under_its_own_name():
    for build in studies.STUDIES.values():
        names = [studies.seeded(exp, s).name for exp in build() for s in studies.SEEDS]
        assert len(names) == len(set(names))  # the analysis keeps one run per name
    assert studies.SEEDS == (0, 1, 2)
    assert studies.sweep().seeds == studies.SEEDS


def test_runs_and_the_sweep_of_an_older_world_are_not_resumed(monkeypatch):
    """A world's new version (its generator or reference model changed) gives every run a new
    resume key and the sweep a new study: `make paper` trains them again instead of mixing."""
    from experiments.paper import runner, training
    from harness.data.worlds import world_version
    from harness.data.worlds.exact import ExactSettings
    from harness.data.worlds.sentiment import SentimentSettings

    exp, sweep = studies.deterministic()[0], studies.sweep()
    assert (exp.dataset, sweep.base.dataset) == ("exact", "sentiment")
    assert world_version("exact") == str(ExactSettings().version)
    assert world_version("sentiment") == str(SentimentSettings().version)
    assert world_version("data/pairs.jsonl") == "none"
    before = training.run_key(exp), runner.sweep_study_name(sweep)
    assert before == (training.run_key(exp), runner.sweep_study_name(sweep))  # stable
    monkeypatch.setattr("harness.data.worlds.world_version", lambda name: "99")
    monkeypatch.setattr(training, "world_version", lambda name: "99")
    after = training.run_key(exp), runner.sweep_study_name(sweep)
    assert after[0] != before[0] and after[1] != before[1]


@pytest.mark.slow
def test_a_second_make_paper_trains_nothing_and_a_killed_run_is_redone(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    where = ["--tracking-uri", uri, "--storage", f"sqlite:///{tmp_path / 'optuna.db'}"]
    args = TINY + where + ["--out", str(tmp_path / "paper")]
    n = len(studies.deterministic())  # one seed each

    assert main(args) == 0
    out = capsys.readouterr().out
    assert counts(out) == (n, 0)
    assert (tmp_path / "paper" / "REPORT.md").exists()
    assert f"Read the report: {tmp_path / 'paper' / 'REPORT.md'}" in out
    assert f"mlflow ui --backend-store-uri {uri}" in out
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(DETERMINISTIC)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == n and {r.info.status for r in runs} == {"FINISHED"}

    assert main(args) == 0
    assert counts(capsys.readouterr().out) == (0, n)
    assert len(client.search_runs([experiment.experiment_id])) == n

    # A run a killed `make paper` left RUNNING (no heartbeat for an hour): KILLED, trained again.
    interrupted = runs[0]
    client.update_run(interrupted.info.run_id, status="RUNNING")
    client.set_tag(interrupted.info.run_id, tags.HEARTBEAT, f"{time.time() - 3600:.0f}")
    assert main(args) == 0
    assert counts(capsys.readouterr().out) == (1, n - 1)
    assert client.get_run(interrupted.info.run_id).info.status == "KILLED"
    again = client.search_runs(
        [experiment.experiment_id], f"tags.paper_key = '{interrupted.data.tags['paper_key']}'"
    )
    assert sorted(r.info.status for r in again) == ["FINISHED", "KILLED"]

    # A live run (this process, a fresh heartbeat): another `make paper` is training it, so it
    # stays RUNNING and is not trained twice.
    live = runs[1]
    client.update_run(live.info.run_id, status="RUNNING")
    client.set_tag(live.info.run_id, tags.PROCESS, stores.this_process())
    client.set_tag(live.info.run_id, tags.HEARTBEAT, f"{time.time():.0f}")
    assert main(args) == 0
    assert counts(capsys.readouterr().out) == (0, n)
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    client.set_terminated(live.info.run_id)


def test_the_make_paper_times_are_kept_when_the_report_is_regenerated(tmp_path):
    from analysis.paper.report import Invocation, generate

    uri, out, lines = f"sqlite:///{tmp_path / 'none.db'}", tmp_path / "paper", []
    generate(uri, out, Invocation(600.0, 5, 0, "2026-01-01 10:00 UTC"), log=lines.append)
    generate(uri, out, Invocation(120.0, 1, 4, "2026-01-01 11:00 UTC"), log=lines.append)
    generate(uri, out, log=lines.append)  # `python -m analysis.paper`: trains nothing
    first = (out / "REPORT.md").read_text().splitlines()[2]
    assert "`make paper` took 12.0 min wall-clock on this machine: 10.0 min (finished" in first
    assert "2026-01-01 11:00 UTC: trained 1 run(s), skipped 4 already finished)" in first

    other = f"sqlite:///{tmp_path / 'other.db'}"  # the same folder, another store's runs
    generate(other, out, Invocation(60.0, 2, 0, "2026-01-02 10:00 UTC"), log=lines.append)
    first = (out / "REPORT.md").read_text().splitlines()[2]
    assert "`make paper` took 1.0 min wall-clock on this machine: 1.0 min (finished" in first
    generate(uri, out, log=lines.append)
    assert "took 12.0 min wall-clock" in (out / "REPORT.md").read_text().splitlines()[2]

    (out / "make_paper.json").write_text("{not json")  # a broken record: no time, said once
    lines.clear()
    generate(uri, out, log=lines.append)
    assert "make paper" not in (out / "REPORT.md").read_text().splitlines()[2]
    assert sum("make_paper.json is unreadable" in line for line in lines) == 1


def test_a_report_without_runs_has_every_row_not_measured(tmp_path):
    from analysis.paper.report import generate, read_claims

    findings = generate(f"sqlite:///{tmp_path / 'none.db'}", tmp_path / "paper", log=print)
    assert [f.verdict for f in findings.values()] == ["not measured"] * len(read_claims())
    text = (tmp_path / "paper" / "REPORT.md").read_text()
    assert text.count("| **not measured** |") == len(read_claims())
    assert "**Time:** 0 finished runs" in text


@pytest.mark.slow
def test_the_sweep_runs_every_grid_point_once_and_resumes(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [*TINY[2:], "--study", SWEEP, "--tracking-uri", uri, "--storage", storage]
    args += ["--out", str(tmp_path / "paper")]
    grid = {(m, b) for m in studies.SWEEP_METHODS for b in studies.SWEEP_BETAS}

    assert main(args) == 0
    assert counts(capsys.readouterr().out) == (len(grid), 0)
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert sorted((t.params["method"], t.params["beta"]) for t in trials) == sorted(grid)
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}

    assert main(args) == 0
    assert counts(capsys.readouterr().out) == (0, len(grid))
    assert "sweep_paper-sweep_beta.png" in (tmp_path / "paper" / "REPORT.md").read_text()


def test_verdicts_follow_the_checks_and_one_seed_decides_nothing():
    from analysis.paper.verdicts import above, below, decide

    assert decide({"a": True, "b": True})[0] == "reproduced"
    # Every claim is universal: one check not shown or contradicted and it is not reproduced.
    assert decide({"a": True, "b": False}) == ("not reproduced", "Holds: a. Not shown: b.")
    assert decide({"a": False})[0] == "not reproduced"
    one_seed = {"n": 1, "mean": 0.3, "ci_low": float("nan"), "ci_high": float("nan")}
    assert above(one_seed) is None
    # An interval says the effect holds, is not shown (it straddles), or is contradicted.
    outcomes = [
        above({"ci_low": low, "ci_high": high}) for low, high in ((1, 2), (-1, 1), (-2, -1))
    ]
    assert outcomes == ["holds", "not shown", "contradicted"]
    assert [below({"ci_low": -2, "ci_high": -1}), below({"ci_low": 1, "ci_high": 2})] == [
        "holds",
        "contradicted",
    ]
    assert decide(dict(zip("abc", outcomes, strict=True))) == (
        "not reproduced",
        "Holds: a. Not shown: b. Contradicted: c.",
    )
    assert decide({"a": "contradicted"})[0] == "not reproduced"
    assert decide({"a": True, "b": above(one_seed)})[0] == "not measured"
